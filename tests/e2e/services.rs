//! Redis and PostgreSQL servers of a test's own, on free loopback ports, that the test may stop,
//! freeze, kill and restart without touching the machine's shared services.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

pub struct OwnRedis {
    pub port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    /// `None` (and a note) where redis-server is not installed.
    pub fn start() -> Option<Self> {
        let mut r = Self {
            port: free_port(),
            child: None,
        };
        r.spawn().then_some(r)
    }

    fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            eprintln!("skipped: redis-server is not installed");
            return false;
        };
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn freeze(&self) {
        signal(self.pid(), "-STOP");
    }

    pub fn thaw(&self) {
        signal(self.pid(), "-CONT");
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        assert!(self.spawn());
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            signal(c.id(), "-CONT");
        }
        self.kill9();
    }
}

/// A throwaway PostgreSQL cluster run as the `postgres` user (PostgreSQL refuses root).
pub struct OwnPostgres {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl OwnPostgres {
    /// `None` (and a note) where PostgreSQL's server binaries or `runuser` are missing.
    pub fn start() -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists());
        let Some(bin) = bin else {
            eprintln!("skipped: PostgreSQL server binaries not found under /usr/lib/postgresql");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let owned = Command::new("chown")
            .args(["-R", "postgres:", dir.path().to_str().unwrap()])
            .status();
        if !owned.is_ok_and(|s| s.success()) {
            eprintln!("skipped: cannot hand a directory to the postgres user (not root?)");
            return None;
        }
        let pg = Self {
            port: free_port(),
            bin,
            dir,
        };
        let initdb = pg.as_postgres(
            pg.bin.join("initdb"),
            &[
                "-D",
                &pg.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        assert!(initdb, "initdb failed");
        pg.start_server();
        Some(pg)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn as_postgres(&self, program: PathBuf, args: &[&str]) -> bool {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    pub fn start_server(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        assert!(
            self.as_postgres(
                self.bin.join("pg_ctl"),
                &["-D", &self.data(), "-o", &opts, "-l", &log, "-w", "start"]
            ),
            "pg_ctl start failed"
        );
    }

    /// Stops it the way a crash or an operator's `immediate` stop does.
    pub fn stop(&self) {
        self.as_postgres(
            self.bin.join("pg_ctl"),
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}
