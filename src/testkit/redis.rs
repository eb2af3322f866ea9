//! A real `redis-server` on a loopback port, for the replay store's tests: started in a
//! temporary directory with persistence off (or with every write on disk), stopped, frozen
//! and restarted on the same port to stage outages. A missing `redis-server` is a failure,
//! never a skip.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// How long a starting server may take to answer.
const START_LIMIT: Duration = Duration::from_secs(10);

/// A `redis-server` child process on `127.0.0.1`, killed (by its own PID) on drop.
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    password: Option<String>,
    /// Arguments after the defaults (persistence, memory policy).
    args: Vec<String>,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers.
    pub fn start() -> RedisServer {
        RedisServer::launch(None, &[])
    }

    /// Starts a server that requires `password` (`requirepass`).
    pub fn with_password(password: &str) -> RedisServer {
        RedisServer::launch(Some(password.to_owned()), &[])
    }

    /// Starts a server whose every write is on disk before it is acknowledged
    /// (`appendonly yes`, `appendfsync always`): a restart keeps every key.
    pub fn durable() -> RedisServer {
        RedisServer::with_args(&["--appendonly", "yes", "--appendfsync", "always"])
    }

    /// Starts a server with `args` after the defaults (they win).
    pub fn with_args(args: &[&str]) -> RedisServer {
        RedisServer::launch(None, args)
    }

    fn launch(password: Option<String>, args: &[&str]) -> RedisServer {
        let binary = redis_server_binary();
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("jwt-authz-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = RedisServer {
            binary,
            port,
            password,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            dir,
            child: None,
        };
        server.spawn();
        server
    }

    /// `redis://127.0.0.1:<port>/0`, with the password as userinfo when there is one.
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    /// The port it listens on, the same across [`RedisServer::restart`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server and waits for it to exit: connections drop and the port refuses.
    /// Unless it is [`RedisServer::durable`], nothing is persisted, so a restart starts
    /// empty.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            child.wait().expect("wait for redis-server");
        }
    }

    /// Stops the server if it runs, then starts it again on the same port and waits until
    /// it answers.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Freezes the server (`SIGSTOP`): connections stay open and nothing answers, like a
    /// hung host.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server run again (`SIGCONT`).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("redis-server is running").id();
        let status = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid}: {status}");
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join("redis.log")).unwrap();
        let mut command = Command::new(&self.binary);
        command
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir);
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        command.args(&self.args);
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.binary.display()));
        self.child = Some(child);
        self.wait_answering();
    }

    /// Polls with `PING` until the server replies (`+PONG`, or `-NOAUTH` when it wants a
    /// password; not `-LOADING`), failing with its log after [`START_LIMIT`] or if it exits.
    fn wait_answering(&mut self) {
        let started = Instant::now();
        loop {
            if self.answers() {
                return;
            }
            let child = self.child.as_mut().expect("redis-server was spawned");
            if let Some(status) = child.try_wait().unwrap() {
                panic!("redis-server exited ({status}):\n{}", self.log());
            }
            assert!(
                started.elapsed() < START_LIMIT,
                "redis-server on port {} did not answer within {START_LIMIT:?}:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends one inline command (`FLUSHALL`, `DBSIZE`, `GET key`) and returns its reply:
    /// the status or integer line as sent (`+OK`, `:0`), or a bulk string's value.
    pub fn command(&self, line: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        if let Some(password) = &self.password {
            stream
                .write_all(format!("AUTH {password}\r\n").as_bytes())
                .unwrap();
            read_line(&mut stream);
        }
        stream.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        let reply = read_line(&mut stream);
        match reply.strip_prefix('$') {
            Some(length) if length.parse::<usize>().is_ok() => read_line(&mut stream),
            _ => reply,
        }
    }

    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        // `-LOADING` is not an answer yet: the data set is still being read from disk.
        let reply = read_line(&mut stream);
        reply.starts_with('+') || reply.starts_with("-NOAUTH")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL needs no cooperation, so a paused server goes too.
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_line(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stream.read_exact(&mut byte).is_ok() && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    String::from_utf8_lossy(&line).trim_end().to_owned()
}

/// `$REDIS_SERVER`, else Debian's `/usr/bin/redis-server`. Panics with the install
/// command when it is missing.
fn redis_server_binary() -> PathBuf {
    let path = std::env::var_os("REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/redis-server"));
    assert!(
        path.is_file(),
        "{} not found (set $REDIS_SERVER or run scripts/install-test-tools.sh)",
        path.display()
    );
    path
}
