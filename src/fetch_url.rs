//! URLs the service fetches keys from: the one scheme rule every such URL obeys, whether
//! configured, discovered or reached through a redirect, and their redacted form for logs,
//! errors and metric labels.
//!
//! A leaf module: configuration checks configured URLs with it and the JWKS cache checks
//! discovered and redirected ones, so neither imports the other.

use url::Url;

/// Parses `value` and applies [`check_scheme`]. Errors name the URL redacted.
pub fn parse_fetch_url(value: &str, allow_http: bool) -> Result<Url, String> {
    // The text is not echoed when it does not parse: it may hold a credential, and
    // without a parse there is nothing to redact.
    let url = Url::parse(value).map_err(|e| format!("not a URL ({e})"))?;
    check_scheme(&url, allow_http)?;
    Ok(url)
}

/// The scheme rule: https, or plain http only on loopback or when `allow_http`
/// (`insecure_allow_http`) says so. Anything else (`file:`, `ftp:`, ...) is refused.
pub fn check_scheme(url: &Url, allow_http: bool) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_http || is_loopback(url) => Ok(()),
        "http" => Err(format!(
            "`{}` must use https (http is accepted only on loopback, or with insecure_allow_http)",
            Redacted(url)
        )),
        other => Err(format!("scheme `{other}` is not supported, use https")),
    }
}

/// Whether `url`'s host is a loopback address or `localhost`.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Displays a URL without userinfo, query or fragment: what may be logged, put in an
/// error or used as a metric label. `https://user:pw@idp/jwks?api_key=k` shows as
/// `https://idp/jwks`.
#[derive(Debug, Clone, Copy)]
pub struct Redacted<'u>(pub &'u Url);

impl std::fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = self.0;
        if url.cannot_be_a_base() {
            // `mailto:`, `data:` and the like: only the scheme is safe to show.
            return write!(f, "{}:", url.scheme());
        }
        write!(f, "{}://", url.scheme())?;
        if let Some(host) = url.host_str() {
            f.write_str(host)?;
        }
        if let Some(port) = url.port() {
            write!(f, ":{port}")?;
        }
        f.write_str(url.path())
    }
}

/// A configured string that may be a URL (an issuer), redacted when it parses as one and
/// shown as-is otherwise.
pub fn redact_str(value: &str) -> String {
    match Url::parse(value) {
        Ok(url) => Redacted(&url).to_string(),
        Err(_) => value.to_owned(),
    }
}

/// The body of a `200` answer, at most `max` bytes, read as it streams; what is wrong
/// otherwise, without the URL.
pub(crate) async fn bounded_body(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, String> {
    if response.status() != reqwest::StatusCode::OK {
        return Err(format!("answered {}", response.status().as_u16()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        if body.len() + chunk.len() > max {
            return Err(format!("the document is larger than {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The URL member `member` of `issuer`'s `/.well-known/<document>` (RFC 8414 placement),
/// fetched with `client` (at most `max` bytes of a 200): the document must name `issuer`
/// exactly, and the URL obey the scheme rule of configured URLs, never downgrade an https
/// issuer to http, and carry no credentials.
pub(crate) async fn discovered_url(
    client: &reqwest::Client,
    (issuer, issuer_url): (&str, &Url),
    document: &str,
    member: &str,
    max: usize,
    allow_http: bool,
) -> Result<Url, String> {
    let response = client
        .get(crate::jwks::well_known(issuer_url, document))
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let body = bounded_body(response, max).await?;
    let doc = crate::claims::parse_object(&body)
        .ok_or_else(|| format!("{document} is not a JSON object"))?;
    if doc.get("issuer").and_then(serde_json::Value::as_str) != Some(issuer) {
        return Err(format!("{document} names another issuer"));
    }
    let url = doc
        .get(member)
        .and_then(serde_json::Value::as_str)
        .and_then(|u| Url::parse(u).ok())
        .ok_or_else(|| format!("{document} has no {member} URL"))?;
    if issuer_url.scheme() == "https" && url.scheme() != "https" {
        return Err(format!("{member} is not https"));
    }
    check_scheme(&url, allow_http)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{member} carries credentials"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(text: &str) -> String {
        Redacted(&Url::parse(text).unwrap()).to_string()
    }

    #[test]
    fn plain_http_is_refused_off_loopback() {
        assert!(parse_fetch_url("http://idp.example.com/", false).is_err());
        assert!(parse_fetch_url("http://idp.example.com/", true).is_ok());
        assert!(parse_fetch_url("http://127.0.0.1:8080/", false).is_ok());
        assert!(parse_fetch_url("http://[::1]:8080/", false).is_ok());
        assert!(parse_fetch_url("http://localhost/", false).is_ok());
        assert!(parse_fetch_url("http://0.0.0.0:8080/", false).is_err());
        assert!(parse_fetch_url("file:///etc/passwd", true).is_err());
        assert!(parse_fetch_url("ftp://idp.example.com/", true).is_err());
    }

    #[test]
    fn redaction_drops_userinfo_query_and_fragment() {
        assert_eq!(
            redacted("https://idp.example/jwks?api_key=secret"),
            "https://idp.example/jwks"
        );
        assert_eq!(redacted("https://user:pw@host/"), "https://host/");
        assert_eq!(
            redacted("http://u@127.0.0.1:8080/a/b?x=1#frag"),
            "http://127.0.0.1:8080/a/b"
        );
        assert_eq!(redacted("http://[::1]:9/"), "http://[::1]:9/");
        assert_eq!(redacted("mailto:user@example.com"), "mailto:");
        assert_eq!(
            redact_str("https://a:b@t.auth0.com/"),
            "https://t.auth0.com/"
        );
        assert_eq!(redact_str("not a url"), "not a url");
    }

    #[test]
    fn errors_never_echo_a_credential() {
        let err =
            parse_fetch_url("http://user:hunter2@idp.example/jwks?api_key=k", false).unwrap_err();
        assert!(
            !err.contains("hunter2") && !err.contains("api_key"),
            "{err}"
        );
        assert!(err.contains("http://idp.example/jwks"), "{err}");
        let err = parse_fetch_url("http//user:hunter2@", false).unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
