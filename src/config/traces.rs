//! Traces (`tracing` in the file, and the standard `OTEL_*` environment variables, which
//! override it as flags override the file). Off unless the file has a `tracing` block or
//! `OTEL_TRACES_EXPORTER=otlp`; `OTEL_TRACES_EXPORTER=none` or `OTEL_SDK_DISABLED=true`
//! turns them off whatever the file says. Bound at start-up.
//!
//! Every value is read strictly: a sampler, ratio, protocol or endpoint this service would
//! not honour exactly as written is a configuration error, never a silent default.

use std::time::Duration;

use url::Url;

use super::Errors;
use super::file::FileTracing;

/// The OTLP/gRPC endpoint when none is given (the OTLP specification's default).
pub const DEFAULT_ENDPOINT: &str = "http://localhost:4317";
/// `service.name` when none is given.
pub const DEFAULT_SERVICE_NAME: &str = "jwt-authz";
/// How long one export may take (the OTLP specification's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where spans go and which are kept.
#[derive(Clone, PartialEq)]
pub struct TracesConfig {
    /// `http://host:port` of an OTLP/gRPC receiver.
    pub endpoint: String,
    /// Sent with each export (`OTEL_EXPORTER_OTLP_HEADERS`): gRPC metadata names and
    /// values, which may be credentials.
    pub headers: Vec<(String, String)>,
    pub sampler: TraceSampler,
    /// The resource's `service.name`.
    pub service_name: String,
    /// The resource's other attributes (`OTEL_RESOURCE_ATTRIBUTES`).
    pub resource: Vec<(String, String)>,
    /// How long one export may take; shutdown waits as long for the last one.
    pub timeout: Duration,
    pub batch: BatchSettings,
}

/// Never prints a header's value.
impl std::fmt::Debug for TracesConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracesConfig")
            .field("endpoint", &self.endpoint)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("sampler", &self.sampler)
            .field("service_name", &self.service_name)
            .field("resource", &self.resource)
            .field("timeout", &self.timeout)
            .field("batch", &self.batch)
            .finish()
    }
}

/// Which Checks are traced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TraceSampler {
    /// The caller's decision when it sent a trace context; else this share of requests.
    ParentBased(f64),
    /// This share of requests, whatever the caller decided (`always_on`, `always_off`,
    /// `traceidratio`).
    Ratio(f64),
}

/// The batch span processor (`OTEL_BSP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// How often a batch leaves.
    pub schedule_delay: Duration,
    /// Spans waiting at most; more are dropped.
    pub max_queue: usize,
    /// Spans per export at most.
    pub max_batch: usize,
}

impl Default for BatchSettings {
    fn default() -> BatchSettings {
        BatchSettings {
            schedule_delay: Duration::from_secs(5),
            max_queue: 2048,
            max_batch: 512,
        }
    }
}

/// The largest span queue: a bound on what traces may hold in memory.
const MAX_QUEUE: usize = 1_000_000;

/// Variables of the OpenTelemetry SDK this service does not implement, or fixes itself:
/// set, they are refused rather than ignored or half-honoured.
const UNSUPPORTED: [(&str, &str); 18] = [
    ("OTEL_EXPORTER_OTLP_COMPRESSION", NO_TLS),
    ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", NO_TLS),
    ("OTEL_EXPORTER_OTLP_CERTIFICATE", NO_TLS),
    ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", NO_TLS),
    ("OTEL_EXPORTER_OTLP_CLIENT_KEY", NO_TLS),
    ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", NO_TLS),
    ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", NO_TLS),
    ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", NO_TLS),
    ("OTEL_EXPORTER_OTLP_INSECURE", NO_TLS),
    ("OTEL_EXPORTER_OTLP_TRACES_INSECURE", NO_TLS),
    ("OTEL_BSP_EXPORT_TIMEOUT", FIXED),
    ("OTEL_BSP_MAX_CONCURRENT_EXPORTS", FIXED),
    ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", FIXED),
    ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", FIXED),
    ("OTEL_SPAN_EVENT_COUNT_LIMIT", FIXED),
    ("OTEL_SPAN_LINK_COUNT_LIMIT", FIXED),
    ("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", FIXED),
    ("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", FIXED),
];
const NO_TLS: &str =
    "is not supported (no compression, no TLS): export to a collector beside the service";
const FIXED: &str = "is not supported: the service sets its spans' limits and export itself";

/// The traces settings of `file` under the environment `env` (a variable's value, `None`
/// when unset or empty); `Some(None)` when traces are off, `None` when a value is bad
/// (recorded).
pub(super) fn parse(
    e: &mut Errors,
    file: Option<&FileTracing>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Option<TracesConfig>> {
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    // The signal's own variable, else the general one, with the name of the one read.
    let either = |traces: &'static str, general: &'static str| {
        env(traces)
            .map(|v| (v, traces))
            .or_else(|| env(general).map(|v| (v, general)))
    };
    let disabled = match env("OTEL_SDK_DISABLED").as_deref().map(str::trim) {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(_) => {
            e.push("OTEL_SDK_DISABLED", "is not true or false");
            return None;
        }
    };
    let on = match env("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
        None => file.is_some(),
        Some("otlp") => true,
        Some("none") => false,
        Some(_) => {
            e.push(
                "OTEL_TRACES_EXPORTER",
                "is not otlp or none (traces are exported over OTLP/gRPC only)",
            );
            return None;
        }
    };
    if disabled || !on {
        return Some(None);
    }
    let file = file.unwrap_or(&FileTracing {
        endpoint: None,
        sampling_ratio: None,
        service_name: None,
        timeout: None,
    });
    let mut ok = true;
    if let Some((v, name)) = either(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ) && v.trim() != "grpc"
    {
        e.push(
            name,
            "is not grpc (traces are exported over OTLP/gRPC only)",
        );
        ok = false;
    }
    for (name, why) in UNSUPPORTED {
        if env(name).is_some() {
            e.push(name, why);
            ok = false;
        }
    }
    // W3C trace context is the one propagation read.
    if let Some(v) = env("OTEL_PROPAGATORS")
        && v.trim() != "tracecontext"
    {
        e.push(
            "OTEL_PROPAGATORS",
            "only tracecontext (W3C traceparent and tracestate) is read",
        );
        ok = false;
    }
    let (endpoint, field) = match either(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ) {
        Some((v, name)) => (v, name),
        None => (
            file.endpoint
                .clone()
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
            "tracing.endpoint",
        ),
    };
    let endpoint = e.check(field, parse_endpoint(endpoint.trim()));
    let headers = match either(
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "OTEL_EXPORTER_OTLP_HEADERS",
    ) {
        None => Vec::new(),
        Some((text, name)) => match parse_pairs(&text).and_then(metadata) {
            Err(why) => {
                e.push(name, why);
                ok = false;
                Vec::new()
            }
            // Credentials in clear text only to this host.
            Ok(_) if endpoint.as_deref().is_some_and(|url| !is_loopback(url)) => {
                e.push(
                    name,
                    "headers (credentials) are sent only to a collector on this host \
                     (a loopback endpoint): a remote collector would need TLS",
                );
                ok = false;
                Vec::new()
            }
            Ok(headers) => headers,
        },
    };
    let sampler = match env("OTEL_TRACES_SAMPLER") {
        Some(name) => e.check(
            "OTEL_TRACES_SAMPLER",
            parse_sampler(name.trim(), env("OTEL_TRACES_SAMPLER_ARG").as_deref()),
        ),
        None if env("OTEL_TRACES_SAMPLER_ARG").is_some() => {
            e.push(
                "OTEL_TRACES_SAMPLER_ARG",
                "is read only with OTEL_TRACES_SAMPLER traceidratio or parentbased_traceidratio",
            );
            None
        }
        None => match file.sampling_ratio {
            None => Some(TraceSampler::ParentBased(1.0)),
            Some(r) => e
                .check("tracing.sampling_ratio", ratio(r))
                .map(TraceSampler::ParentBased),
        },
    };
    let resource = match env("OTEL_RESOURCE_ATTRIBUTES") {
        None => Some(Vec::new()),
        Some(text) => e.check("OTEL_RESOURCE_ATTRIBUTES", parse_pairs(&text)),
    };
    // The specification's order: OTEL_SERVICE_NAME, then `service.name` among the
    // resource attributes; then the file; then the default.
    let from_resource = resource
        .iter()
        .flatten()
        .find(|(k, _)| k == "service.name")
        .map(|(_, v)| (v.clone(), "OTEL_RESOURCE_ATTRIBUTES"));
    let service_name = match env("OTEL_SERVICE_NAME")
        .map(|v| (v, "OTEL_SERVICE_NAME"))
        .or(from_resource)
        .or_else(|| {
            file.service_name
                .clone()
                .map(|v| (v, "tracing.service_name"))
        }) {
        None => Some(DEFAULT_SERVICE_NAME.to_owned()),
        Some((name, field)) if name.trim().is_empty() || name.chars().any(char::is_control) => {
            e.push(field, "must be a non-empty printable name");
            None
        }
        Some((name, _)) => Some(name.trim().to_owned()),
    };
    let timeout = match either(
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ) {
        Some((v, name)) => e.check(
            name,
            whole_number(&v, 1, 600_000).map(Duration::from_millis),
        ),
        None => match file.timeout {
            Some(d) if d.is_zero() => {
                e.push("tracing.timeout", "must be greater than 0");
                None
            }
            Some(d) => Some(d),
            None => Some(DEFAULT_TIMEOUT),
        },
    };
    let batch = batch_settings(e, &env);
    if !ok {
        return None;
    }
    Some(Some(TracesConfig {
        endpoint: endpoint?,
        headers,
        sampler: sampler?,
        service_name: service_name?,
        resource: resource?
            .into_iter()
            .filter(|(k, _)| k != "service.name")
            .collect(),
        timeout: timeout?,
        batch: batch?,
    }))
}

/// `OTEL_BSP_*`, each bounded: a zero delay would spin, a zero queue drop every span, a
/// huge one allocate at start-up.
fn batch_settings(e: &mut Errors, env: &dyn Fn(&str) -> Option<String>) -> Option<BatchSettings> {
    let defaults = BatchSettings::default();
    let mut read = |name: &str, min: u64, max: u64, default: u64| match env(name) {
        None => Some(default),
        Some(text) => e.check(name, whole_number(&text, min, max)),
    };
    let delay = read(
        "OTEL_BSP_SCHEDULE_DELAY",
        10,
        600_000,
        defaults.schedule_delay.as_millis() as u64,
    );
    let queue = read(
        "OTEL_BSP_MAX_QUEUE_SIZE",
        1,
        MAX_QUEUE as u64,
        defaults.max_queue as u64,
    );
    let batch = read(
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        1,
        MAX_QUEUE as u64,
        defaults.max_batch as u64,
    );
    let (delay, queue, batch) = (delay?, queue?, batch?);
    Some(BatchSettings {
        schedule_delay: Duration::from_millis(delay),
        max_queue: queue as usize,
        // The specification: a batch is at most the queue.
        max_batch: batch.min(queue) as usize,
    })
}

/// Header pairs as gRPC metadata: lower-case ASCII names, visible ASCII values. Errors
/// name the header, never its value.
fn metadata(pairs: Vec<(String, String)>) -> Result<Vec<(String, String)>, String> {
    pairs
        .into_iter()
        .map(|(name, value)| {
            let name = name.to_ascii_lowercase();
            tonic::metadata::MetadataKey::<tonic::metadata::Ascii>::from_bytes(name.as_bytes())
                .map_err(|_| format!("`{name}` is not a gRPC metadata name"))?;
            if name.ends_with("-bin") || name.starts_with("grpc-") {
                return Err(format!("`{name}` is reserved or binary metadata"));
            }
            if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err(format!("the value of `{name}` is not visible ASCII"));
            }
            Ok((name, value))
        })
        .collect()
}

/// `key=value` pairs separated by commas, values percent-decoded (the W3C Baggage form
/// `OTEL_EXPORTER_OTLP_HEADERS` and `OTEL_RESOURCE_ATTRIBUTES` use). Every pair must be
/// well formed, and no key may repeat.
fn parse_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (i, item) in text.split(',').enumerate() {
        let Some((key, value)) = item.split_once('=') else {
            return Err(format!("item {} is not key=value", i + 1));
        };
        let key = key.trim();
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if key.is_empty() || !key.bytes().all(token) {
            return Err(format!("item {}: the key is not a token", i + 1));
        }
        let value = percent_decode(value.trim()).ok_or_else(|| {
            format!(
                "item {} (`{key}`): the value is not percent-encoded UTF-8",
                i + 1
            )
        })?;
        if value.chars().any(char::is_control) {
            return Err(format!(
                "item {} (`{key}`): the value has a control character",
                i + 1
            ));
        }
        if pairs.iter().any(|(k, _)| k.eq_ignore_ascii_case(key)) {
            return Err(format!("`{key}` is given twice"));
        }
        pairs.push((key.to_owned(), value));
    }
    Ok(pairs)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether `url` (an endpoint [`parse_endpoint`] gave) names this host.
fn is_loopback(url: &str) -> bool {
    match Url::parse(url)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// An OTLP/gRPC endpoint: `http://host[:port]`, nothing after the authority but `/`.
/// Credentials travel in `OTEL_EXPORTER_OTLP_HEADERS`, never in the URL, which is logged.
fn parse_endpoint(text: &str) -> Result<String, String> {
    // Messages never repeat the value: it may hold credentials or a query.
    let url = Url::parse(text).map_err(|e| format!("is not a URL: {e}"))?;
    if url.scheme() == "https" {
        return Err(
            "https endpoints are not supported: export to an OTLP collector beside the \
             service (`http://host:4317`), which forwards over TLS"
                .to_owned(),
        );
    }
    if url.scheme() != "http" || url.host_str().is_none_or(str::is_empty) {
        return Err("is not an http://host:port URL".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "must not carry credentials; put them in OTEL_EXPORTER_OTLP_HEADERS".to_owned(),
        );
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(
            "has a path, query or fragment; an OTLP/gRPC endpoint is http://host:port".to_owned(),
        );
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let host = url.host_str().unwrap_or_default();
    Ok(format!("http://{host}:{port}"))
}

/// `OTEL_TRACES_SAMPLER` with its argument.
fn parse_sampler(name: &str, arg: Option<&str>) -> Result<TraceSampler, String> {
    let ratio_sampler = matches!(name, "traceidratio" | "parentbased_traceidratio");
    if arg.is_some() && !ratio_sampler {
        return Err(format!(
            "`{name}` takes no OTEL_TRACES_SAMPLER_ARG (only the traceidratio samplers do)"
        ));
    }
    let arg_ratio = || -> Result<f64, String> {
        match arg.map(str::trim) {
            None => Ok(1.0),
            Some(text) => text
                .parse::<f64>()
                .map_err(|_| format!("OTEL_TRACES_SAMPLER_ARG `{text}` is not a number"))
                .and_then(ratio)
                .map_err(|e| format!("OTEL_TRACES_SAMPLER_ARG: {e}")),
        }
    };
    Ok(match name {
        "always_on" => TraceSampler::Ratio(1.0),
        "always_off" => TraceSampler::Ratio(0.0),
        "traceidratio" => TraceSampler::Ratio(arg_ratio()?),
        "parentbased_always_on" => TraceSampler::ParentBased(1.0),
        "parentbased_always_off" => TraceSampler::ParentBased(0.0),
        "parentbased_traceidratio" => TraceSampler::ParentBased(arg_ratio()?),
        other => {
            return Err(format!(
                "`{other}` is not always_on, always_off, traceidratio, parentbased_always_on, \
                 parentbased_always_off or parentbased_traceidratio"
            ));
        }
    })
}

fn ratio(r: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&r) {
        Ok(r)
    } else {
        Err(format!("{r} is not between 0 and 1"))
    }
}

/// A whole number within `min..=max`, as the OTLP variables give milliseconds and sizes.
fn whole_number(text: &str, min: u64, max: u64) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        Ok(_) => Err(format!("must be between {min} and {max}")),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(
        yaml: Option<&str>,
        vars: &[(&str, &str)],
    ) -> Result<Option<TracesConfig>, Vec<String>> {
        let file: Option<FileTracing> = yaml.map(|y| serde_yaml_ng::from_str(y).unwrap());
        let env = |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        };
        let mut e = Errors(Vec::new());
        let parsed = parse(&mut e, file.as_ref(), &env);
        match parsed {
            Some(config) if e.0.is_empty() => Ok(config),
            _ => Err(e.0.iter().map(|e| e.to_string()).collect()),
        }
    }

    #[test]
    fn off_unless_asked_for() {
        assert_eq!(read(None, &[]), Ok(None));
        assert_eq!(
            read(None, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]),
            Ok(None)
        );
        assert_eq!(read(Some("{}"), &[("OTEL_SDK_DISABLED", "true")]), Ok(None));
        assert_eq!(
            read(Some("{}"), &[("OTEL_TRACES_EXPORTER", "none")]),
            Ok(None)
        );
        // An empty variable is unset.
        assert!(
            read(Some("{}"), &[("OTEL_TRACES_EXPORTER", "")])
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn defaults_and_the_environment_over_the_file() {
        let on = read(Some("{}"), &[]).unwrap().unwrap();
        assert_eq!(
            on,
            TracesConfig {
                endpoint: "http://localhost:4317".into(),
                headers: Vec::new(),
                sampler: TraceSampler::ParentBased(1.0),
                service_name: "jwt-authz".into(),
                resource: Vec::new(),
                timeout: DEFAULT_TIMEOUT,
                batch: BatchSettings::default(),
            }
        );
        let file =
            "endpoint: http://file:4317\nsampling_ratio: 0.25\nservice_name: edge\ntimeout: 2s";
        let from_file = read(Some(file), &[]).unwrap().unwrap();
        assert_eq!(from_file.endpoint, "http://file:4317");
        assert_eq!(from_file.sampler, TraceSampler::ParentBased(0.25));
        assert_eq!(from_file.timeout, Duration::from_secs(2));
        let env = read(
            Some(file),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4317"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317/"),
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
                ("OTEL_SERVICE_NAME", "authz"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "1500"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(env.endpoint, "http://traces:4317");
        assert_eq!(env.sampler, TraceSampler::Ratio(0.5));
        assert_eq!(env.service_name, "authz");
        assert_eq!(env.timeout, Duration::from_millis(1500));
        let by_env = read(None, &[("OTEL_TRACES_EXPORTER", "otlp")]).unwrap();
        assert_eq!(by_env.unwrap().endpoint, "http://localhost:4317");
        // The signal's own variable wins over the general one.
        let specific = read(
            Some("{}"),
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            ],
        );
        assert!(specific.unwrap().is_some());
        let resource = read(
            Some("service_name: from-file"),
            &[(
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=from%20env,deployment.environment=prod",
            )],
        )
        .unwrap()
        .unwrap();
        assert_eq!(resource.service_name, "from env");
        assert_eq!(
            resource.resource,
            vec![("deployment.environment".to_owned(), "prod".to_owned())]
        );
        let batch = read(
            Some("{}"),
            &[
                ("OTEL_BSP_SCHEDULE_DELAY", "100"),
                ("OTEL_BSP_MAX_QUEUE_SIZE", "64"),
                ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512"),
            ],
        )
        .unwrap()
        .unwrap()
        .batch;
        assert_eq!(
            batch,
            BatchSettings {
                schedule_delay: Duration::from_millis(100),
                max_queue: 64,
                max_batch: 64,
            }
        );
        let headers = read(
            Some("endpoint: http://127.0.0.1:4317"),
            &[("OTEL_EXPORTER_OTLP_HEADERS", "Api-Key=abc%3D,x-team=edge")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            headers.headers,
            vec![
                ("api-key".to_owned(), "abc=".to_owned()),
                ("x-team".to_owned(), "edge".to_owned())
            ]
        );
        assert!(!format!("{headers:?}").contains("abc="), "{headers:?}");
        // An empty signal variable is unset: the general one is read.
        let general = read(
            Some("endpoint: http://127.0.0.1:4317"),
            &[
                ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", ""),
                ("OTEL_EXPORTER_OTLP_HEADERS", "k=v"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(general.headers, vec![("k".to_owned(), "v".to_owned())]);
    }

    #[test]
    fn errors_never_repeat_a_header_value() {
        for vars in [
            &[("OTEL_EXPORTER_OTLP_HEADERS", "api-key=hv-marker")][..],
            &[("OTEL_EXPORTER_OTLP_HEADERS", "api-key=hv-marker%zz")][..],
            &[("OTEL_EXPORTER_OTLP_HEADERS", "api-key=hv-marker\u{e9}")][..],
        ] {
            let errors =
                read(Some("endpoint: http://collector.example:4317"), vars).expect_err("refused");
            assert!(
                errors.iter().all(|e| !e.contains("hv-marker")),
                "{errors:?}"
            );
        }
    }

    #[test]
    fn errors_never_repeat_the_endpoint() {
        for url in [
            "http://user:pw-marker@c:4317",
            "http://c:4317/?key=pw-marker",
            "ftp://pw-marker@c",
            "pw-marker",
        ] {
            let errors = read(Some(&format!("endpoint: \"{url}\"")), &[]).expect_err(url);
            assert!(
                errors.iter().all(|e| !e.contains("pw-marker")),
                "{errors:?}"
            );
        }
    }

    #[test]
    fn every_bad_value_is_named() {
        // The file's block, the environment, and what the error must name.
        type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (Some("sampling_ratio: 1.5"), &[], "tracing.sampling_ratio"),
            (Some("sampling_ratio: -0.1"), &[], "tracing.sampling_ratio"),
            (Some("endpoint: https://c:4317"), &[], "https endpoints"),
            (Some("endpoint: http://u:p@c:4317"), &[], "credentials"),
            (Some("endpoint: http://c:4317/v1/traces"), &[], "path"),
            (Some("endpoint: grpc://c:4317"), &[], "http://host:port"),
            (Some("timeout: 0s"), &[], "tracing.timeout"),
            (Some("service_name: ' '"), &[], "tracing.service_name"),
            (
                Some("{}"),
                &[("OTEL_TRACES_SAMPLER", "sometimes")],
                "OTEL_TRACES_SAMPLER",
            ),
            (
                Some("{}"),
                &[
                    ("OTEL_TRACES_SAMPLER", "traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "2"),
                ],
                "OTEL_TRACES_SAMPLER_ARG",
            ),
            (
                Some("{}"),
                &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (
                None,
                &[("OTEL_TRACES_EXPORTER", "zipkin")],
                "OTEL_TRACES_EXPORTER",
            ),
            (
                Some("{}"),
                &[("OTEL_SDK_DISABLED", "yes")],
                "OTEL_SDK_DISABLED",
            ),
            (
                Some("{}"),
                &[("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")],
                "OTEL_EXPORTER_OTLP_TIMEOUT",
            ),
            (
                Some("{}"),
                &[("OTEL_BSP_SCHEDULE_DELAY", "0")],
                "OTEL_BSP_SCHEDULE_DELAY",
            ),
            (
                Some("{}"),
                &[("OTEL_BSP_SCHEDULE_DELAY", "5s")],
                "OTEL_BSP_SCHEDULE_DELAY",
            ),
            (
                Some("{}"),
                &[("OTEL_BSP_MAX_QUEUE_SIZE", "0")],
                "OTEL_BSP_MAX_QUEUE_SIZE",
            ),
            (
                Some("{}"),
                &[("OTEL_BSP_MAX_QUEUE_SIZE", "99999999999")],
                "OTEL_BSP_MAX_QUEUE_SIZE",
            ),
            (
                Some("{}"),
                &[("OTEL_EXPORTER_OTLP_HEADERS", "api-key")],
                "OTEL_EXPORTER_OTLP_HEADERS",
            ),
            (
                Some("{}"),
                &[("OTEL_EXPORTER_OTLP_HEADERS", "a=1,a=2")],
                "OTEL_EXPORTER_OTLP_HEADERS",
            ),
            (
                Some("{}"),
                &[("OTEL_EXPORTER_OTLP_HEADERS", "a=%zz")],
                "OTEL_EXPORTER_OTLP_HEADERS",
            ),
            (
                Some("endpoint: http://collector.example:4317"),
                &[("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "api-key=secret")],
                "a remote collector would need TLS",
            ),
            (
                Some("{}"),
                &[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")],
                "OTEL_EXPORTER_OTLP_COMPRESSION",
            ),
            (
                Some("{}"),
                &[("OTEL_EXPORTER_OTLP_CERTIFICATE", "/ca.pem")],
                "OTEL_EXPORTER_OTLP_CERTIFICATE",
            ),
            (
                Some("{}"),
                &[("OTEL_RESOURCE_ATTRIBUTES", "a=b,c")],
                "OTEL_RESOURCE_ATTRIBUTES",
            ),
            (
                Some("{}"),
                &[("OTEL_SERVICE_NAME", "a\u{7}b")],
                "OTEL_SERVICE_NAME",
            ),
        ];
        for (yaml, vars, expected) in cases {
            let errors = read(*yaml, vars).expect_err(expected);
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{yaml:?} {vars:?}: {errors:?} should name {expected}"
            );
        }
    }
}
