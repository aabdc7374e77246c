//! A bare PostgreSQL instance (no agent): `initdb` and `postgres` run directly
//! as the `postgres` user on a free loopback port.
//!
//! Rule: for testing the harness itself and tools that need a plain server;
//! agent-managed instances belong to [`crate::ClusterFixture`].

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::bins::pg_bin;
use crate::dirs::TestDir;
use crate::ports::free_port;
use crate::proc::{command_as_postgres, kill_child, signal, wait_child};

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running postgres (trust authentication on 127.0.0.1 and the socket).
#[derive(Debug)]
pub struct PostgresFixture {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
}

impl PostgresFixture {
    /// `initdb` into `<dir>/<name>/data` and start postgres; returns once it
    /// accepts connections on `127.0.0.1:<port>` as `postgres`.
    pub async fn start(dir: &TestDir, name: &str) -> PostgresFixture {
        let home = dir.subdir(name);
        let data_dir = home.join("data");
        let log_path = home.join("postgres.log");
        let initdb = pg_bin("initdb");
        let out = command_as_postgres(&initdb, &home)
            .arg("-D")
            .arg(&data_dir)
            .args([
                "--username=postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", initdb.display()));
        if !out.status.success() {
            panic!(
                "initdb -D {} failed ({}):\n{}{}",
                data_dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }

        let mut pg = PostgresFixture {
            child: None,
            port: free_port(),
            dir: home,
            data_dir,
            log_path,
        };
        pg.spawn().await;
        pg
    }

    async fn spawn(&mut self) {
        let bin = pg_bin("postgres");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log_path.display()));
        let stderr = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot dup log fd: {e}"));
        let child = command_as_postgres(&bin, &self.dir)
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "logging_collector=off",
                "-c",
                "shared_buffers=16MB",
                "-c",
                "fsync=off",
            ])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        self.child = Some(child);

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "postgres exited during startup ({status}); last lines of {}:\n{}",
                    self.log_path.display(),
                    crate::logs::tail(&self.log_path, 40)
                );
            }
            if crate::client::try_connect(&self.port).await.is_ok() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "postgres on port {} not accepting connections after {START_TIMEOUT:?}; \
                     last lines of {}:\n{}",
                    self.port,
                    self.log_path.display(),
                    crate::logs::tail(&self.log_path, 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The postmaster's pid while it has not been stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Fast shutdown (SIGINT), SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id() as i32, Signal::SIGINT);
            if wait_child(&mut child, Duration::from_secs(10)).is_none() {
                kill_child(&mut child);
            }
        }
    }
}

impl Drop for PostgresFixture {
    fn drop(&mut self) {
        self.stop();
    }
}
