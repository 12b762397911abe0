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

/// A three-master Redis Cluster of a test's own (no replicas, nothing on disk but each node's
/// cluster config), whose masters the test may kill and restart.
pub struct OwnRedisCluster {
    pub ports: Vec<u16>,
    dir: tempfile::TempDir,
    children: Vec<Option<Child>>,
}

impl OwnRedisCluster {
    /// `None` (and a note) where redis-server or redis-cli is not installed.
    pub fn start() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut cluster = Self {
            ports,
            dir,
            children: vec![None, None, None],
        };
        for i in 0..3 {
            if !cluster.spawn(i) {
                return None;
            }
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match created {
            Ok(s) if s.success() => {}
            Ok(s) => panic!("redis-cli --cluster create failed: {s}"),
            Err(_) => {
                eprintln!("skipped: redis-cli is not installed");
                return None;
            }
        }
        cluster.wait_ok();
        Some(cluster)
    }

    fn spawn(&mut self, i: usize) -> bool {
        let port = self.ports[i].to_string();
        let conf = self.dir.path().join(format!("nodes-{port}.conf"));
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
            .arg("--cluster-config-file")
            .arg(&conf)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            eprintln!("skipped: redis-server is not installed");
            return false;
        };
        self.children[i] = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.ports[i])).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {port}");
    }

    /// Waits until every node says the cluster is ok.
    pub fn wait_ok(&self) {
        for _ in 0..250 {
            let ok = self.ports.iter().all(|p| {
                Command::new("redis-cli")
                    .args(["-p", &p.to_string(), "cluster", "info"])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
            });
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(40));
        }
        panic!("the Redis Cluster did not reach cluster_state:ok");
    }

    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a killed master again, with its cluster config (it keeps its slots; its data is
    /// gone, as nothing is saved).
    pub fn restart(&mut self, i: usize) {
        self.kill9(i);
        assert!(self.spawn(i));
        self.wait_ok();
    }
}

impl Drop for OwnRedisCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill9(i);
        }
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
        // A start right after an immediate stop can lose a race under a busy parallel suite (the
        // port or the old postmaster's shared memory not yet free): try a few times, and say why
        // in the end.
        for attempt in 1..=3 {
            if self.as_postgres(
                self.bin.join("pg_ctl"),
                &["-D", &self.data(), "-o", &opts, "-l", &log, "-w", "start"],
            ) {
                return;
            }
            if attempt < 3 {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        panic!(
            "pg_ctl start failed three times; the server log ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
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
