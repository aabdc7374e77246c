//! The postgres child process: spawn, readiness, stop modes as signals, reload,
//! an orphan left by a previous agent, and one-off SQL.
//!
//! Rule: postgres always runs as the agent's child; every wait has a deadline.

use super::*;

impl PgCtl {
    /// Is the postmaster running? Reaps an exited child and tells how it ended.
    pub fn proc_state(&self) -> ProcState {
        let mut slot = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let Some(ch) = slot.as_ref() else {
            return ProcState::NotStarted;
        };
        let exited = ch.exited.borrow().clone();
        match exited {
            None => ProcState::Running {
                pid: ch.pid,
                since: ch.started,
            },
            Some(status) => {
                let requested = ch.stop_requested.load(Ordering::SeqCst);
                *slot = None;
                if requested {
                    ProcState::Stopped
                } else {
                    ProcState::Crashed(status)
                }
            }
        }
    }

    pub fn is_running(&self) -> bool {
        let slot = self.child.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref().is_some_and(|c| c.exited.borrow().is_none())
    }

    pub fn postmaster_pid(&self) -> Option<i32> {
        let slot = self.child.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref()
            .filter(|c| c.exited.borrow().is_none())
            .map(|c| c.pid)
    }

    /// A postmaster left behind by an earlier agent (its pid file points to a live
    /// postgres): stop it, since we cannot supervise a process that is not our child.
    pub async fn stop_orphan(&self) -> Result<()> {
        let pidfile = self.data().join("postmaster.pid");
        let Ok(text) = std::fs::read_to_string(&pidfile) else {
            return Ok(());
        };
        let Some(pid) = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
        else {
            return Ok(());
        };
        if self.postmaster_pid() == Some(pid) {
            return Ok(());
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if !comm.trim().starts_with("postgres") {
            return Ok(());
        }
        tracing::warn!(
            pid,
            "found a postgres we did not start (pid file in our data dir): stopping it"
        );
        let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if kill(Pid::from_raw(pid), None).is_err() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
        tokio::time::sleep(Duration::from_secs(2)).await;
        if kill(Pid::from_raw(pid), None).is_ok() {
            bail!("could not stop the leftover postmaster {pid}");
        }
        Ok(())
    }

    /// Spawn the postmaster as our child (parent-death signal SIGQUIT, own process group).
    pub fn spawn(&self) -> Result<()> {
        if self.is_running() {
            bail!("postgres is already running");
        }
        let mut cmd = crate::child_env::command(self.s.bin("postgres"));
        cmd.arg("-D")
            .arg(self.data())
            .arg(format!(
                "--config-file={}",
                self.data().join("postgresql.conf").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("LC_MESSAGES", "C")
            .process_group(0);
        let parent = std::process::id() as i32;
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGQUIT).map_err(std::io::Error::from)?;
                if nix::unistd::getppid().as_raw() != parent {
                    // the agent died before prctl took effect
                    return Err(std::io::Error::other("parent exited"));
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("start {}", self.s.bin("postgres").display()))?;
        let pid = child.id().ok_or_else(|| anyhow!("postmaster has no pid"))? as i32;
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward_lines(out));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward_lines(err));
        }
        let (tx, rx) = watch::channel(None);
        let wake = self.wake.clone();
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(s) => s.to_string(),
                Err(e) => format!("wait failed: {e}"),
            };
            let _ = tx.send(Some(status));
            wake.notify_one();
        });
        tracing::info!(pid, "postgres started");
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(Child {
            pid,
            exited: rx,
            stop_requested: Arc::new(AtomicBool::new(false)),
            started: Instant::now(),
        });
        Ok(())
    }

    /// Wait until postgres accepts connections, or fail if it exits or the deadline passes.
    pub async fn wait_ready(
        &self,
        dynamic: &BTreeMap<String, Value>,
        timeout: Duration,
    ) -> Result<()> {
        let conn = self.s.local_conn(dynamic);
        let deadline = Instant::now() + timeout;
        let mut last_err = String::new();
        loop {
            let exited = {
                let slot = self.child.lock().unwrap_or_else(|e| e.into_inner());
                match slot.as_ref() {
                    None => Some("not running".to_string()),
                    Some(c) => c.exited.borrow().clone(),
                }
            };
            if let Some(status) = exited {
                bail!("postgres exited during start-up ({status})");
            }
            match tokio::time::timeout(
                Duration::from_secs(2),
                super::tls::connect(&conn, &self.s.superuser),
            )
            .await
            {
                Ok(Ok((client, h))) => {
                    let ok = client.simple_query("SELECT 1").await.is_ok();
                    drop(client);
                    h.abort();
                    if ok {
                        return Ok(());
                    }
                }
                Ok(Err(e)) => last_err = e.to_string(),
                Err(_) => last_err = "connect timed out".into(),
            }
            if Instant::now() > deadline {
                bail!("postgres did not accept connections within {timeout:?}: {last_err}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Start postgres as primary (`standby = None`) or replica, and wait until it answers.
    pub async fn start(
        &self,
        dynamic: &BTreeMap<String, Value>,
        standby: Option<StandbyConf>,
        timeout: Duration,
    ) -> Result<()> {
        self.write_config(dynamic, standby, &self.hba_lines())?;
        self.spawn()?;
        if let Err(e) = self.wait_ready(dynamic, timeout).await {
            let _ = self
                .stop(StopMode::Immediate, Duration::from_secs(10))
                .await;
            return Err(e);
        }
        Ok(())
    }

    /// Stop postgres with the given mode; escalates to immediate, then SIGKILL, after `timeout`.
    pub async fn stop(&self, mode: StopMode, timeout: Duration) -> Result<()> {
        let running = self
            .child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|c| c.exited.borrow().is_none());
        // Patroni's before_stop: waited for, bounded by the stop's timeout. Not
        // before an immediate stop: that is the emergency path (a primary that
        // lost its key, a crash), which must not wait for a script.
        if running && mode != StopMode::Immediate {
            self.callbacks.before_stop(timeout).await;
        }
        let (pid, mut exited) = {
            let slot = self.child.lock().unwrap_or_else(|e| e.into_inner());
            match slot.as_ref() {
                None => return Ok(()),
                Some(c) => {
                    c.stop_requested.store(true, Ordering::SeqCst);
                    (c.pid, c.exited.clone())
                }
            }
        };
        let sig = match mode {
            StopMode::Smart => Signal::SIGTERM,
            StopMode::Fast => Signal::SIGINT,
            StopMode::Immediate => Signal::SIGQUIT,
        };
        tracing::info!(pid, ?mode, "stopping postgres");
        let _ = kill(Pid::from_raw(pid), sig);
        let wait = |d: Duration, rx: &mut watch::Receiver<Option<String>>| {
            let mut rx = rx.clone();
            async move {
                tokio::time::timeout(d, rx.wait_for(|s| s.is_some()))
                    .await
                    .is_ok()
            }
        };
        if !wait(timeout, &mut exited).await {
            tracing::warn!(pid, "postgres did not stop in time: immediate shutdown");
            let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
            if !wait(Duration::from_secs(10), &mut exited).await {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                let _ = wait(Duration::from_secs(5), &mut exited).await;
            }
        }
        let mut slot = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|c| c.pid == pid) {
            *slot = None;
        }
        Ok(())
    }

    /// Ask the postmaster to re-read its configuration.
    pub fn reload(&self) -> Result<()> {
        let pid = self
            .postmaster_pid()
            .ok_or_else(|| anyhow!("postgres is not running"))?;
        kill(Pid::from_raw(pid), Signal::SIGHUP).context("send SIGHUP")?;
        Ok(())
    }

    /// Run a SQL statement on the local postgres with a timeout.
    pub async fn execute(
        &self,
        dynamic: &BTreeMap<String, Value>,
        sql: &str,
        timeout: Duration,
    ) -> Result<Vec<tokio_postgres::SimpleQueryMessage>> {
        let conn = self.s.local_conn(dynamic);
        let fut = async {
            let (client, h) = super::tls::connect(&conn, &self.s.superuser).await?;
            let r = client.simple_query(sql).await;
            drop(client);
            let _ = h.await;
            Ok::<_, anyhow::Error>(r?)
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| anyhow!("query timed out after {timeout:?}"))?
    }
}

async fn forward_lines<R: tokio::io::AsyncRead + Unpin>(r: R) {
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "postgres", "{line}");
    }
}
