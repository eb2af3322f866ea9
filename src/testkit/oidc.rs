//! A real OpenID provider for tests: `tests/oidc/provider.mjs` (the certified
//! `oidc-provider` on Node.js) on a loopback port, and a client for its token endpoint that
//! obtains the three kinds of access token the service verifies: plain Bearer, DPoP-bound
//! (RFC 9449, `cnf.jkt`) and certificate-bound (RFC 8705, `cnf["x5t#S256"]`). All are
//! RFC 9068 JWTs (`typ: at+jwt`) for audience [`AUDIENCE`], signed RS256 by a key of the
//! provider's jwks_uri. For [`OPAQUE_RESOURCE`] it issues opaque tokens, which only its
//! introspection endpoint can judge (as [`INTROSPECTION_CLIENT`]).
//!
//! A missing `node`, or `tests/oidc/node_modules` not installed, fails the test with the
//! command that fixes it (`scripts/install-test-tools.sh`): never a skip.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;

use super::dpop::{ProofKey, proof_claims};
use super::mint::AUDIENCE;

/// Client id and secret of the provider's `client_secret_basic` client.
const BEARER_CLIENT: (&str, &str) = ("bearer-client", "bearer-secret");
/// The resource whose access tokens are opaque.
pub const OPAQUE_RESOURCE: &str = "https://opaque.example.com";
/// The client the service introspects as (`client_secret_basic`), and its secret; the
/// same secret also authenticates `jwt-authz-post` (`client_secret_post`).
pub const INTROSPECTION_CLIENT: (&str, &str) = ("jwt-authz", "introspection-secret");
/// The client id the provider's Bearer tokens are issued to (their `sub` and
/// `client_id`).
pub const BEARER_CLIENT_ID: &str = BEARER_CLIENT.0;
/// Client id of the provider's `tls_client_auth` client.
const MTLS_CLIENT: &str = "mtls-client";
/// The request header the provider reads the client certificate from (URL-encoded PEM).
const CLIENT_CERT_HEADER: &str = "x-client-cert";
/// How long the provider may take to print its ready line: it generates an RSA key first,
/// and the tools tests start several at once on a loaded machine.
const READY_LIMIT: Duration = Duration::from_secs(90);
/// Providers this process started: names each one's log file.
static STARTED: AtomicU64 = AtomicU64::new(0);

/// `tests/oidc/provider.mjs` running on a loopback port; killed (by its own PID) on drop.
pub struct OidcProvider {
    process: Process,
    issuer: String,
    discovery: Value,
    http: reqwest::Client,
}

/// What the token endpoint answered.
#[derive(Clone, Debug)]
pub struct TokenResponse {
    pub status: u16,
    /// The `DPoP-Nonce` response header, if any.
    pub dpop_nonce: Option<String>,
    /// The JSON body: the token response, or `{"error", "error_description"}`.
    pub body: Value,
}

impl OidcProvider {
    /// Starts the provider on a free loopback port and reads its discovery document.
    pub async fn start() -> OidcProvider {
        OidcProvider::spawn(false, None).await
    }

    /// Like [`OidcProvider::start`], but the token endpoint demands a DPoP nonce: a proof
    /// without one gets 400 `use_dpop_nonce` and a `DPoP-Nonce` header (RFC 9449 §8).
    pub async fn start_requiring_dpop_nonce() -> OidcProvider {
        OidcProvider::spawn(true, None).await
    }

    /// [`OidcProvider::start`], also issuing JWT access tokens for the MCP server at
    /// `resource` (its URL, the RFC 8707 resource indicator), with scopes out of `mcp
    /// mcp:tools mcp:admin`; its client `mcp-client` (secret `mcp-secret`) may be granted
    /// `mcp mcp:tools` only.
    pub async fn start_for_mcp(resource: &str) -> OidcProvider {
        OidcProvider::spawn(false, Some(resource)).await
    }

    async fn spawn(require_dpop_nonce: bool, mcp_resource: Option<&str>) -> OidcProvider {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = root.join("tests/oidc");
        assert!(
            dir.join("node_modules/oidc-provider/package.json")
                .is_file(),
            "{} has no oidc-provider installed (run scripts/install-test-tools.sh)",
            dir.display()
        );
        let node = installed(
            "NODE",
            "node",
            "install Node.js 20 or later, then run scripts/install-test-tools.sh",
        );
        let log = std::env::temp_dir().join(format!(
            "jwt-authz-oidc-{}-{}.log",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let mut command = Command::new(&node);
        command
            .arg(dir.join("provider.mjs"))
            .arg("0")
            .current_dir(&dir)
            .env(
                "OIDC_DPOP_REQUIRE_NONCE",
                if require_dpop_nonce { "1" } else { "0" },
            )
            .env("OIDC_MCP_RESOURCE", mcp_resource.unwrap_or(""))
            // The provider exits when its standard input closes, should this process die
            // without dropping it.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", node.display()));
        let stdout = child.stdout.take().expect("stdout is piped");
        let process = Process {
            stdin: child.stdin.take(),
            child,
            log,
        };

        // The ready line is read on a blocking thread; the bounded wait is here.
        let ready = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            let issuer = lines
                .by_ref()
                .map_while(Result::ok)
                .find_map(|line| line.strip_prefix("listening ").map(str::to_owned))?;
            // Keep the pipe open (and drained) for the provider's lifetime.
            std::thread::spawn(move || lines.for_each(drop));
            Some(issuer)
        });
        let issuer = match tokio::time::timeout(READY_LIMIT, ready).await {
            Ok(Ok(Some(issuer))) => issuer,
            Ok(_) => panic!(
                "the OpenID provider exited before it listened: {}",
                process.log()
            ),
            Err(_) => panic!(
                "the OpenID provider did not listen within {READY_LIMIT:?}: {}",
                process.log()
            ),
        };

        let http = reqwest::Client::new();
        let discovery = http
            .get(format!("{issuer}/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("discovery at {issuer}: {e}"));
        assert_eq!(discovery.status(), 200, "discovery at {issuer}");
        let discovery: Value = serde_json::from_slice(&discovery.bytes().await.unwrap()).unwrap();
        assert_eq!(discovery["issuer"], issuer.as_str());
        OidcProvider {
            process,
            issuer,
            discovery,
            http,
        }
    }

    /// The issuer, `http://127.0.0.1:<port>` (no trailing slash): what the tokens' `iss` holds.
    pub fn issuer(&self) -> String {
        self.issuer.clone()
    }

    /// `jwks_uri` from the discovery document.
    pub fn jwks_uri(&self) -> String {
        self.endpoint("jwks_uri")
    }

    /// `token_endpoint` from the discovery document: the `htu` of a token request's proof.
    pub fn token_endpoint(&self) -> String {
        self.endpoint("token_endpoint")
    }

    /// The discovery document.
    pub fn discovery(&self) -> &Value {
        &self.discovery
    }

    /// What the provider logged on stderr so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// A Bearer access token with `scope` (space-separated; empty for none) from the
    /// `client_secret_basic` client.
    pub async fn bearer_token(&self, scope: &str) -> String {
        let response = self.token_request(scope, Auth::Secret, None).await;
        self.access_token(response, "Bearer")
    }

    /// An opaque Bearer access token for [`OPAQUE_RESOURCE`] with `scope`, judged only
    /// through the provider's introspection endpoint.
    pub async fn opaque_token(&self, scope: &str) -> String {
        let response = self
            .request_for(OPAQUE_RESOURCE, scope, Auth::Secret, None)
            .await;
        self.access_token(response, "Bearer")
    }

    /// An opaque DPoP-bound access token for [`OPAQUE_RESOURCE`]: its introspection answer
    /// carries `cnf.jkt` = `key.thumbprint()`.
    pub async fn opaque_dpop_token(&self, key: &ProofKey, scope: &str) -> String {
        let claims = proof_claims("POST", &self.token_endpoint(), None);
        let proof = key.sign(&key.header(), &claims);
        let response = self
            .request_for(OPAQUE_RESOURCE, scope, Auth::Secret, Some(&proof))
            .await;
        self.access_token(response, "DPoP")
    }

    /// Revokes `token` at the provider (RFC 7009), as the client that got it.
    pub async fn revoke_at_source(&self, token: &str) {
        let endpoint = self.endpoint("revocation_endpoint");
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("token", token);
        let response = self
            .http
            .post(endpoint)
            .basic_auth(BEARER_CLIENT.0, Some(BEARER_CLIENT.1))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.finish())
            .send()
            .await
            .unwrap_or_else(|e| panic!("revocation request: {e}"));
        assert_eq!(response.status(), 200, "revocation at the provider");
    }

    /// A DPoP-bound access token (`token_type` DPoP, `cnf.jkt` = `key.thumbprint()`) with
    /// `scope`, from the `client_secret_basic` client. When the provider answers
    /// `use_dpop_nonce`, retries once with the nonce it gave.
    pub async fn dpop_token(&self, key: &ProofKey, scope: &str) -> String {
        let mut response = self.dpop_token_response(key, scope, None).await;
        if response.status == 400 && response.body["error"] == "use_dpop_nonce" {
            let nonce = response.dpop_nonce.clone().unwrap_or_else(|| {
                panic!("use_dpop_nonce without a DPoP-Nonce header: {response:?}")
            });
            response = self.dpop_token_response(key, scope, Some(&nonce)).await;
        }
        self.access_token(response, "DPoP")
    }

    /// One token request with a fresh DPoP proof by `key` for `POST <token_endpoint>`
    /// (with `nonce` when given), whatever the answer.
    pub async fn dpop_token_response(
        &self,
        key: &ProofKey,
        scope: &str,
        nonce: Option<&str>,
    ) -> TokenResponse {
        let mut claims = proof_claims("POST", &self.token_endpoint(), None);
        if let Some(nonce) = nonce {
            claims["nonce"] = Value::String(nonce.to_owned());
        }
        let proof = key.sign(&key.header(), &claims);
        self.token_request(scope, Auth::Secret, Some(&proof)).await
    }

    /// A certificate-bound access token (`cnf["x5t#S256"]` of `cert_pem`) with `scope`, from
    /// the `tls_client_auth` client. The certificate's subject must be
    /// `CN=jwt-authz-test-client` ([`super::CLIENT_CERT_CN`]), as every certificate of
    /// [`super::client_certificate`] and [`super::generate_pki`] is.
    pub async fn mtls_token(&self, cert_pem: &str, scope: &str) -> String {
        let response = self
            .token_request(scope, Auth::Certificate(cert_pem), None)
            .await;
        self.access_token(response, "Bearer")
    }

    fn endpoint(&self, name: &str) -> String {
        self.discovery[name]
            .as_str()
            .unwrap_or_else(|| panic!("discovery has no {name}"))
            .to_owned()
    }

    /// POSTs a client_credentials request for resource [`AUDIENCE`].
    async fn token_request(
        &self,
        scope: &str,
        auth: Auth<'_>,
        dpop: Option<&str>,
    ) -> TokenResponse {
        self.request_for(AUDIENCE, scope, auth, dpop).await
    }

    /// POSTs a client_credentials request for `resource`.
    async fn request_for(
        &self,
        resource: &str,
        scope: &str,
        auth: Auth<'_>,
        dpop: Option<&str>,
    ) -> TokenResponse {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        form.append_pair("resource", resource);
        if !scope.is_empty() {
            form.append_pair("scope", scope);
        }
        let mut request = self.http.post(self.token_endpoint());
        match auth {
            Auth::Secret => {
                request = request.basic_auth(BEARER_CLIENT.0, Some(BEARER_CLIENT.1));
            }
            Auth::Certificate(pem) => {
                form.append_pair("client_id", MTLS_CLIENT);
                request = request.header(CLIENT_CERT_HEADER, percent_encode(pem));
            }
        }
        if let Some(proof) = dpop {
            request = request.header("dpop", proof);
        }
        let response = request
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.finish())
            .send()
            .await
            .unwrap_or_else(|e| panic!("token request: {e}"));
        let status = response.status().as_u16();
        let dpop_nonce = response
            .headers()
            .get("dpop-nonce")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = response.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "token endpoint answered {status} with no JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        TokenResponse {
            status,
            dpop_nonce,
            body,
        }
    }

    fn access_token(&self, response: TokenResponse, token_type: &str) -> String {
        assert_eq!(
            response.status,
            200,
            "token request failed: {:?}\nprovider log:\n{}",
            response.body,
            self.log()
        );
        assert_eq!(
            response.body["token_type"], token_type,
            "{:?}",
            response.body
        );
        response.body["access_token"]
            .as_str()
            .expect("a token response has access_token")
            .to_owned()
    }
}

/// How the token request authenticates its client.
enum Auth<'a> {
    /// `client_secret_basic` as the Bearer client.
    Secret,
    /// `tls_client_auth` as the mTLS client, with this PEM certificate.
    Certificate(&'a str),
}

/// The provider's process; killed and reaped on drop.
struct Process {
    child: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl Process {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        drop(self.stdin.take());
        // `Child::kill` signals this child's own PID, nothing else.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, as nginx's
/// `$ssl_client_escaped_cert` does to a PEM certificate.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The `node` binary (`$NODE`, else on the `PATH`): a missing one fails the test.
pub fn node() -> PathBuf {
    installed(
        "NODE",
        "node",
        "install Node.js 20 or later, then run scripts/install-test-tools.sh",
    )
}

/// Path of a system program for tests: `$VAR` when set, else `name` on the `PATH`, else
/// `/usr/bin/<name>`. Panics with `hint` when none exists: a missing program is a failure,
/// never a skip.
pub(super) fn installed(var: &str, name: &str, hint: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(var) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "${var} is {}, which is not a file ({hint})",
            path.display()
        );
        return path;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{name} not found on the PATH (set ${var}, or {hint})"))
}
