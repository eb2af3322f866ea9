//! X.509 certificates for mutual-TLS tests (RFC 8705), made by the `openssl` command line
//! in a directory the caller owns: a self-signed client certificate, and a small PKI (a CA,
//! a server certificate for `127.0.0.1`/`localhost`, two client certificates with keys of
//! their own). Keys are P-256; certificates are valid for a week from now.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::dpop::certificate_thumbprint;
use super::oidc::installed;

/// Subject common name of every client certificate made here. The test OpenID provider's
/// mTLS client (`tls_client_auth`) is registered with subject DN
/// `CN=jwt-authz-test-client`, so each of them can obtain certificate-bound tokens.
pub const CLIENT_CERT_CN: &str = "jwt-authz-test-client";

/// A certificate and its private key, in memory and on disk.
#[derive(Clone, Debug)]
pub struct Certificate {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The certificate, DER: what `x5t#S256` hashes.
    pub der: Vec<u8>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl Certificate {
    /// `x5t#S256` of this certificate (RFC 8705 §3.1): what a token bound to it carries in
    /// `cnf`.
    pub fn thumbprint(&self) -> String {
        certificate_thumbprint(&self.der)
    }
}

/// A CA and the certificates it signed, for a TLS listener that requires client
/// certificates.
#[derive(Clone, Debug)]
pub struct Pki {
    /// The CA certificate, PEM (what the listener trusts for client certificates, and the
    /// client for the server's).
    pub ca_pem: String,
    pub ca_path: PathBuf,
    /// Server certificate for `127.0.0.1` and `localhost` (subjectAltName), signed by the CA.
    pub server: Certificate,
    /// Client certificate (CN [`CLIENT_CERT_CN`], clientAuth), signed by the CA.
    pub client: Certificate,
    /// A second client certificate from the same CA and subject, with another key: the one a
    /// token bound to [`Pki::client`] must not be accepted with.
    pub other_client: Certificate,
}

/// A self-signed client certificate (CN [`CLIENT_CERT_CN`]) and its key, written to
/// `dir/client.pem` and `dir/client.key`.
pub fn client_certificate(dir: &Path) -> Certificate {
    let cnf = write_config(dir);
    let key_path = new_key(dir, "client");
    let cert_path = dir.join("client.pem");
    run(openssl()
        .args(["req", "-x509", "-new", "-extensions", "self_signed_client"])
        .arg("-config")
        .arg(&cnf)
        .arg("-key")
        .arg(&key_path)
        .args(["-subj", &format!("/CN={CLIENT_CERT_CN}")])
        .args(["-days", "7", "-sha256"])
        .arg("-out")
        .arg(&cert_path));
    load(cert_path, key_path)
}

/// A CA (`dir/ca.pem`), a server certificate and two client certificates it signed, each
/// with its own key (`dir/{server,client,other-client}.{pem,key}`).
pub fn generate_pki(dir: &Path) -> Pki {
    let cnf = write_config(dir);
    let ca_key = new_key(dir, "ca");
    let ca_path = dir.join("ca.pem");
    run(openssl()
        .args(["req", "-x509", "-new", "-extensions", "ca"])
        .arg("-config")
        .arg(&cnf)
        .arg("-key")
        .arg(&ca_key)
        .args(["-subj", "/CN=jwt-authz test CA"])
        .args(["-days", "7", "-sha256"])
        .arg("-out")
        .arg(&ca_path));
    let ca = Signer {
        dir,
        cnf: &cnf,
        cert: &ca_path,
        key: &ca_key,
    };
    let client_subject = format!("/CN={CLIENT_CERT_CN}");
    Pki {
        ca_pem: read(&ca_path),
        server: ca.issue("server", "/CN=localhost", "server", 1),
        client: ca.issue("client", &client_subject, "client", 2),
        other_client: ca.issue("other-client", &client_subject, "client", 3),
        ca_path,
    }
}

/// A CA that signs leaf certificates into `dir`.
struct Signer<'a> {
    dir: &'a Path,
    cnf: &'a Path,
    cert: &'a Path,
    key: &'a Path,
}

impl Signer<'_> {
    /// A new key and a certificate for `subject` with the `extensions` section of the
    /// config, written to `dir/<name>.{key,pem}`.
    fn issue(&self, name: &str, subject: &str, extensions: &str, serial: u32) -> Certificate {
        let key_path = new_key(self.dir, name);
        let csr = self.dir.join(format!("{name}.csr"));
        let cert_path = self.dir.join(format!("{name}.pem"));
        run(openssl()
            .args(["req", "-new", "-subj", subject])
            .arg("-config")
            .arg(self.cnf)
            .arg("-key")
            .arg(&key_path)
            .arg("-out")
            .arg(&csr));
        run(openssl()
            .args(["x509", "-req", "-days", "7", "-sha256"])
            .args([
                "-set_serial",
                &serial.to_string(),
                "-extensions",
                extensions,
            ])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(self.cert)
            .arg("-CAkey")
            .arg(self.key)
            .arg("-extfile")
            .arg(self.cnf)
            .arg("-out")
            .arg(&cert_path));
        load(cert_path, key_path)
    }
}

// Our own configuration, so the system's openssl.cnf adds no extensions of its own.
const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = jwt-authz-test

[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash

[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
authorityKeyIdentifier = keyid

[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid

[self_signed_client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
";

fn write_config(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("openssl.cnf");
    std::fs::write(&path, OPENSSL_CNF).unwrap();
    path
}

/// A new P-256 key at `dir/<name>.key`.
fn new_key(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.key"));
    run(openssl()
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .arg("-out")
        .arg(&path));
    path
}

fn load(cert_path: PathBuf, key_path: PathBuf) -> Certificate {
    let cert_pem = read(&cert_path);
    Certificate {
        der: pem_to_der(&cert_pem),
        key_pem: read(&key_path),
        cert_pem,
        cert_path,
        key_path,
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The DER bytes of the first PEM block.
fn pem_to_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .skip_while(|line| !line.starts_with("-----BEGIN "))
        .skip(1)
        .take_while(|line| !line.starts_with("-----END "))
        .collect();
    STANDARD.decode(body).expect("openssl writes valid PEM")
}

/// The `openssl` command: `$OPENSSL`, else `openssl` on the `PATH`.
fn openssl() -> Command {
    Command::new(installed("OPENSSL", "openssl", "apt-get install openssl"))
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
