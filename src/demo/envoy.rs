//! Runs the shipped Envoy bootstrap (`envoy/envoy.yaml`) on other ports: the demo and the
//! end-to-end tests use the very file users copy, with only the port numbers swapped.

use std::path::{Path, PathBuf};

/// The ports written in `envoy/envoy.yaml`, and the ones to use instead.
#[derive(Debug, Clone, Copy)]
pub struct EnvoyPorts {
    pub listener: u16,
    pub admin: u16,
    pub authz: u16,
    pub upstream: u16,
    /// The OTLP collector Envoy sends its spans to.
    pub collector: u16,
}

impl EnvoyPorts {
    /// The ports as written in the shipped file.
    pub const SHIPPED: EnvoyPorts = EnvoyPorts {
        listener: 8080,
        admin: 9901,
        authz: 9191,
        upstream: 8000,
        collector: 4317,
    };
}

/// Rewrites the shipped bootstrap for `ports`, binding the listener to loopback. Fails if
/// the file no longer has each shipped port exactly once.
pub fn bootstrap_with_ports(text: &str, ports: EnvoyPorts) -> Result<String, String> {
    let shipped = EnvoyPorts::SHIPPED;
    let mut out = text.replace("address: 0.0.0.0,", "address: 127.0.0.1,");
    for (from, to) in [
        (shipped.listener, ports.listener),
        (shipped.admin, ports.admin),
        (shipped.authz, ports.authz),
        (shipped.upstream, ports.upstream),
        (shipped.collector, ports.collector),
    ] {
        let needle = format!("port_value: {from} ");
        let count = out.matches(&needle).count();
        if count != 1 {
            return Err(format!(
                "envoy bootstrap: expected `{needle}` once, found it {count} times"
            ));
        }
        out = out.replace(&needle, &format!("port_value: {to} "));
    }
    Ok(out)
}

/// Flags every Envoy started here runs with: no hot-restart shared memory (so several can
/// run side by side), one worker, warnings only.
pub const ENVOY_FLAGS: [&str; 5] = [
    "--disable-hot-restart",
    "--concurrency",
    "1",
    "-l",
    "warning",
];

/// Finds an `envoy` binary: `explicit`, else `envoy` on the PATH, else the one
/// `scripts/install-test-tools.sh` installs under `.tools/`.
pub fn find_envoy(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_path_buf());
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("envoy"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let local = PathBuf::from(".tools/venv/bin/envoy");
        local.is_file().then_some(local)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_bootstrap_rewrites_every_port_once() {
        let text = include_str!("../../envoy/envoy.yaml");
        let ports = EnvoyPorts {
            listener: 18080,
            admin: 19901,
            authz: 19191,
            upstream: 18000,
            collector: 14317,
        };
        let out = bootstrap_with_ports(text, ports).unwrap();
        for port in [18080, 19901, 19191, 18000, 14317] {
            assert_eq!(out.matches(&format!("port_value: {port} ")).count(), 1);
        }
        assert!(!out.contains("0.0.0.0"));
    }

    #[test]
    fn a_changed_file_is_reported() {
        assert!(bootstrap_with_ports("port_value: 8080 ", EnvoyPorts::SHIPPED).is_err());
    }
}
