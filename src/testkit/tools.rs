//! Ports, external programs and bounded waits for tests that drive processes: a missing
//! tool is a failure, never a skip, and no wait is unbounded.

use std::net::SocketAddr;
use std::time::Duration;

/// A port that was free a moment ago, for processes that bind it themselves (Envoy, the
/// demo binary).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Path of an external tool the tests drive: `$VAR`, else `.tools/<rel>`. Panics with the
/// install command when it is missing: a missing tool is a failure, never a skip.
pub fn tool(var: &str, rel: &str) -> std::path::PathBuf {
    let path = std::env::var_os(var)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(".tools")
                .join(rel)
        });
    assert!(
        path.is_file(),
        "{} not found (set ${var} or run scripts/install-test-tools.sh)",
        path.display()
    );
    path
}

/// A loopback address nothing listens on: bound, read and released, so a connection to
/// it is refused until someone binds it again.
pub fn unused_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Polls `done` every 10 ms until it holds, failing after `limit`.
pub async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A file in the temporary directory, named for this process, removed when dropped: a
/// test leaves nothing behind, whether it passes or fails.
pub struct TempFile {
    path: std::path::PathBuf,
}

impl TempFile {
    /// Writes `contents` to a new file whose name ends in `name`.
    pub fn new(name: &str, contents: impl AsRef<[u8]>) -> TempFile {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "jwt-authz-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).unwrap();
        TempFile { path }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The path as text, for a command line or a configuration file.
    pub fn as_str(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Replaces the contents.
    pub fn write(&self, contents: impl AsRef<[u8]>) {
        std::fs::write(&self.path, contents).unwrap();
    }
}

/// A `TempFile` is used as its path.
impl std::ops::Deref for TempFile {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.path
    }
}

impl AsRef<std::path::Path> for TempFile {
    fn as_ref(&self) -> &std::path::Path {
        &self.path
    }
}

impl AsRef<std::ffi::OsStr> for TempFile {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The lines `child` writes to its standard error (piped), read on a thread of their own as
/// they come, so a test can wait for one with a bound.
pub fn stderr_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let stderr = std::io::BufReader::new(child.stderr.take().expect("stderr is piped"));
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}
