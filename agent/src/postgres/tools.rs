//! The PostgreSQL tools the agent runs: initdb (bootstrap), pg_basebackup
//! (clone), pg_rewind, pg_controldata; and removing a data directory.
//!
//! Rule: every tool has a timeout and is killed with its future; blocking file
//! work runs off the runtime thread.

use super::*;

impl PgCtl {
    pub async fn controldata(&self) -> Result<ControlState> {
        let out = tokio::time::timeout(
            Duration::from_secs(10),
            crate::child_env::command(self.s.bin("pg_controldata"))
                .arg(self.data())
                .env("LC_ALL", "C")
                .env("LANG", "C")
                .kill_on_drop(true)
                .output(),
        )
        .await
        .context("pg_controldata timed out")?
        .context("run pg_controldata")?;
        if !out.status.success() {
            bail!(
                "pg_controldata: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        ControlState::parse(&String::from_utf8_lossy(&out.stdout))
            .ok_or_else(|| anyhow!("pg_controldata: unexpected output"))
    }

    /// initdb, start as primary with loopback-only trust, create the roles, then
    /// install the real pg_hba. Returns the system identifier.
    pub async fn bootstrap(
        &self,
        dynamic: &BTreeMap<String, Value>,
        timeout: Duration,
    ) -> Result<String> {
        let d = self.data();
        if let Some(parent) = d.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("create {}", parent.display()))?;
        }
        let mut cmd = crate::child_env::command(self.s.bin("initdb"));
        cmd.arg("-D")
            .arg(d)
            .arg(format!("--username={}", self.s.superuser.username));
        for a in &self.s.initdb_args {
            if a.starts_with("--username") || a.starts_with("--pgdata") {
                continue;
            }
            cmd.arg(a);
        }
        run_tool(cmd, "initdb", tool_timeouts::INITDB).await?;
        self.write_config(
            dynamic,
            None,
            &bootstrap_hba(&self.s.superuser.username, &conf::os_user()),
        )?;
        self.spawn()?;
        self.wait_ready(dynamic, timeout).await?;
        let mut sql = String::new();
        let su = &self.s.superuser;
        if let Some(pw) = &su.password {
            sql.push_str(&format!(
                "ALTER ROLE {} WITH PASSWORD {};\n",
                quote_ident(&su.username),
                quote_literal(pw)
            ));
        }
        let rep = &self.s.replication;
        if rep.username != su.username {
            sql.push_str(&create_role_sql(
                &rep.username,
                rep.password.as_deref(),
                "LOGIN REPLICATION",
            ));
        }
        if let Some(rw) = &self.s.rewind {
            if rw.username != su.username {
                sql.push_str(&create_role_sql(
                    &rw.username,
                    rw.password.as_deref(),
                    "LOGIN",
                ));
                for f in [
                    "pg_catalog.pg_ls_dir(text, boolean, boolean)",
                    "pg_catalog.pg_stat_file(text, boolean)",
                    "pg_catalog.pg_read_binary_file(text)",
                    "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
                ] {
                    sql.push_str(&format!(
                        "GRANT EXECUTE ON function {f} TO {};\n",
                        quote_ident(&rw.username)
                    ));
                }
            }
        }
        if !sql.is_empty() {
            self.execute(dynamic, &sql, Duration::from_secs(30))
                .await
                .context("create roles")?;
        }
        if let Some(script) = &self.s.post_bootstrap {
            let url = format!(
                "postgres://{}@{}:{}/postgres",
                su.username,
                self.s
                    .listen_addresses
                    .split(',')
                    .next()
                    .unwrap_or("127.0.0.1"),
                self.s.port
            );
            let mut cmd = crate::child_env::command("/bin/sh");
            cmd.arg("-c")
                .arg(format!("{script} \"$1\""))
                .arg("post_bootstrap")
                .arg(url);
            if let Some(passfile) = self.s.ensure_pgpass()? {
                cmd.env("PGPASSFILE", passfile);
            }
            run_tool(cmd, "post_bootstrap script", tool_timeouts::SCRIPT).await?;
        }
        self.write_config(dynamic, None, &self.hba_lines())?;
        self.reload()?;
        let sysid = self.controldata().await?.sysid;
        Ok(sysid)
    }

    /// pg_basebackup from `src` into the (empty) data directory.
    pub async fn basebackup(&self, src: &Source) -> Result<()> {
        let d = self.data();
        if let Some(parent) = d.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("create {}", parent.display()))?;
        }
        if d.exists() {
            remove_dir_blocking(d.to_path_buf()).await?;
        }
        // The connection as a conninfo (with the replication user's TLS options and
        // the passfile): no password on the command line or in the environment.
        let conninfo = self.s.tool_conninfo(src, &self.s.replication)?;
        let mut cmd = crate::child_env::command(self.s.bin("pg_basebackup"));
        cmd.arg("-D")
            .arg(d)
            .args(["-X", "stream", "-c", "fast", "--no-password"])
            .arg("-d")
            .arg(conninfo)
            .env("PGAPPNAME", format!("{}-clone", self.s.name))
            .env("PGCONNECT_TIMEOUT", "5");
        for a in &self.s.basebackup_args {
            cmd.arg(a);
        }
        let r = run_tool(cmd, "pg_basebackup", tool_timeouts::BASEBACKUP).await;
        if r.is_err() && d.exists() {
            let _ = remove_dir_blocking(d.to_path_buf()).await;
        }
        r.map(|_| ())
    }

    /// pg_rewind the stopped data directory to `src`.
    pub async fn rewind(&self, src: &Source) -> Result<()> {
        let creds = self.s.rewind.as_ref().unwrap_or(&self.s.superuser);
        let conninfo = format!(
            "{} dbname=postgres connect_timeout=5",
            self.s.tool_conninfo(src, creds)?
        );
        // pg_rewind reads the source's timeline from its pg_control, which a freshly
        // promoted primary updates only with its first checkpoint. Until then
        // pg_rewind sees one timeline on both sides and declares, wrongly, that no
        // rewind is needed. Ask for that checkpoint (as Patroni does) first.
        let checkpointed = self.checkpoint_source(src).await;
        // A target that was not shut down cleanly (a fenced or crashed primary that
        // was then started as a standby and stopped again) is recovered by
        // pg_rewind in single-user mode, which refuses to run with standby.signal
        // ("standby mode is not supported by single-user servers"). Take the
        // signal files away for the rewind; put standby.signal back if it fails,
        // a successful rewind is followed by a start that writes it again.
        let signal = self.data().join("standby.signal");
        let had_signal = signal.exists();
        if had_signal {
            std::fs::remove_file(&signal).context("remove standby.signal before pg_rewind")?;
        }
        let _ = std::fs::remove_file(self.data().join("recovery.signal"));
        // pg_rewind copies the source's configuration files; ours are rewritten before start.
        let mut cmd = crate::child_env::command(self.s.bin("pg_rewind"));
        cmd.arg(format!("--target-pgdata={}", self.data().display()))
            .arg(format!("--source-server={conninfo}"));
        let out = match run_tool(cmd, "pg_rewind", tool_timeouts::REWIND).await {
            Ok(out) => out,
            Err(e) => {
                if had_signal {
                    let _ = std::fs::write(&signal, b"");
                }
                return Err(e);
            }
        };
        if out.contains("source and target cluster are on the same timeline") {
            if had_signal {
                let _ = std::fs::write(&signal, b"");
            }
            if let Err(e) = checkpointed {
                tracing::warn!("could not ask {} for a checkpoint: {e:#}", src.name);
            }
            // Not a failure of the rewind (nothing was changed): the loop decides
            // again, after a pause so that this does not spin.
            tracing::warn!(
                "{}'s pg_control does not show its new timeline yet (no checkpoint since \
                 its promotion); trying again shortly",
                src.name
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Ok(())
    }

    /// Make sure the primary `src` has checkpointed since its promotion: its
    /// pg_control then carries its current timeline. Needs the superuser
    /// credentials to be valid on `src` (they are the same on every node).
    async fn checkpoint_source(&self, src: &Source) -> Result<()> {
        let mut c = tokio_postgres::Config::new();
        c.host(&src.host)
            .port(src.port)
            .user(&self.s.superuser.username)
            .dbname("postgres")
            .application_name("agent")
            .connect_timeout(Duration::from_secs(5));
        if let Some(p) = &self.s.superuser.password {
            c.password(p.as_bytes());
        }
        let fut = async {
            let (client, h) = super::tls::connect(&c, &self.s.superuser).await?;
            let r = async {
                let row = client
                    .query_one(
                        "SELECT pg_catalog.pg_is_in_recovery(), \
                         (SELECT timeline_id FROM pg_catalog.pg_control_checkpoint())",
                        &[],
                    )
                    .await?;
                let (in_recovery, cp_tl): (bool, i32) = (row.get(0), row.get(1));
                if in_recovery {
                    return Ok::<_, tokio_postgres::Error>(());
                }
                let wal = client
                    .query_one(
                        "SELECT pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn())",
                        &[],
                    )
                    .await?;
                let name: String = wal.get(0);
                let tl = name
                    .get(..8)
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .unwrap_or(0);
                if (cp_tl as u32) < tl {
                    tracing::info!(
                        "{} has not checkpointed on timeline {tl} yet: CHECKPOINT",
                        src.name
                    );
                    client.batch_execute("CHECKPOINT").await?;
                }
                Ok(())
            }
            .await;
            drop(client);
            let _ = h.await;
            Ok::<_, anyhow::Error>(r?)
        };
        tokio::time::timeout(Duration::from_secs(60), fut)
            .await
            .map_err(|_| anyhow!("timed out"))?
    }

    /// Remove the data directory so the node can be re-cloned.
    pub async fn remove_data_dir(&self) -> Result<()> {
        let d = self.data();
        if d.exists() {
            tracing::warn!(dir = %d.display(), "removing the data directory");
            remove_dir_blocking(d.to_path_buf()).await?;
        }
        Ok(())
    }
}

/// How long each tool may run before it is killed: long enough for big clusters,
/// bounded so that a hung tool cannot hold the node forever.
mod tool_timeouts {
    use std::time::Duration;
    pub const INITDB: Duration = Duration::from_secs(600);
    pub const SCRIPT: Duration = Duration::from_secs(3600);
    pub const REWIND: Duration = Duration::from_secs(6 * 3600);
    pub const BASEBACKUP: Duration = Duration::from_secs(24 * 3600);
}

/// `remove_dir_all` of a big data directory takes seconds: off the runtime's one
/// thread, so the loop, the lease and the REST API keep going.
async fn remove_dir_blocking(d: PathBuf) -> Result<()> {
    let shown = d.display().to_string();
    tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&d))
        .await
        .map_err(|e| anyhow!("remove {shown}: {e}"))?
        .with_context(|| format!("remove {shown}"))
}

fn create_role_sql(name: &str, password: Option<&str>, options: &str) -> String {
    let pw = password
        .map(|p| format!(" PASSWORD {}", quote_literal(p)))
        .unwrap_or_default();
    format!(
        "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {lit}) THEN \
         CREATE ROLE {id} WITH {options}{pw}; ELSE ALTER ROLE {id} WITH {options}{pw}; END IF; END$$;\n",
        lit = quote_literal(name),
        id = quote_ident(name),
    )
}

/// Run a PostgreSQL tool, log its output, fail on a non-zero exit; returns its
/// output (stdout, then stderr).
async fn run_tool(
    mut cmd: tokio::process::Command,
    what: &str,
    timeout: Duration,
) -> Result<String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("LC_MESSAGES", "C")
        .kill_on_drop(true);
    // program and arguments only (they carry no secret: passwords go through the passfile)
    let std = cmd.as_std();
    let args: Vec<String> = std
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    tracing::info!(
        tool = what,
        "running {} {}",
        std.get_program().to_string_lossy(),
        args.join(" ")
    );
    // kill_on_drop: a tool that runs past its time is killed with the future
    let out = match tokio::time::timeout(timeout, cmd.output()).await {
        Ok(r) => r.with_context(|| format!("start {what}"))?,
        Err(_) => bail!(
            "{what} did not finish within {}s; killed",
            timeout.as_secs()
        ),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for l in stdout.lines().chain(stderr.lines()) {
        tracing::info!(target: "postgres", "{what}: {l}");
    }
    if !out.status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("{what} failed ({}): {}", out.status, tail.join(" | "));
    }
    Ok(format!("{stdout}{stderr}"))
}
