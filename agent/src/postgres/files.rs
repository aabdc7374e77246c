//! The files the agent writes into the data directory (`postgresql.conf`,
//! `pg_hba.conf`, `standby.signal`) and reads from it (state, timeline history).
//!
//! Rule: writes are atomic (write, then rename); rendering is in `conf.rs`, pure.

use super::*;

impl PgCtl {
    /// Examine the data directory (runs pg_controldata when initialized).
    pub async fn data_dir_state(&self) -> DataDir {
        let dir = self.data();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return DataDir::Empty,
            Err(e) => return DataDir::Invalid(format!("{}: {e}", dir.display())),
        };
        if entries.count() == 0 {
            return DataDir::Empty;
        }
        if !dir.join("PG_VERSION").is_file() || !dir.join("global/pg_control").is_file() {
            return DataDir::Invalid(format!(
                "{} is not empty but is not a postgres data directory",
                dir.display()
            ));
        }
        let control = self.controldata().await.ok();
        DataDir::Initialized {
            sysid: control
                .as_ref()
                .map(|c| c.sysid.clone())
                .filter(|s| !s.is_empty()),
            control,
            standby_signal: dir.join("standby.signal").exists(),
        }
    }

    /// Write postgresql.conf, pg_hba.conf and standby.signal for the next start.
    pub fn write_config(
        &self,
        dynamic: &BTreeMap<String, Value>,
        standby: Option<StandbyConf>,
        hba: &[String],
    ) -> Result<()> {
        let d = self.data();
        let conf = d.join("postgresql.conf");
        let base = d.join("postgresql.base.conf");
        if !base.exists() && conf.exists() {
            let text = std::fs::read_to_string(&conf).unwrap_or_default();
            if !text.starts_with("# Managed by agent") {
                std::fs::rename(&conf, &base)
                    .context("keep initdb's postgresql.conf as postgresql.base.conf")?;
            }
        }
        if standby.is_some() {
            self.s.ensure_pgpass()?;
        }
        let parameters = self.s.merged_parameters(dynamic);
        *self.written.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((standby.clone(), parameters.clone()));
        let input = ConfInput {
            listen_addresses: self.s.listen_addresses.clone(),
            port: self.s.port,
            cluster_name: self.s.scope.clone(),
            parameters,
            hba_file: d.join("pg_hba.conf").display().to_string(),
            ident_file: d.join("pg_ident.conf").display().to_string(),
            synchronous_standby_names: self
                .sync_names
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            standby: standby.clone(),
        };
        write_atomic(&conf, &render_postgresql_conf(&input))?;
        write_atomic(&d.join("pg_hba.conf"), &render_hba(hba))?;
        let signal = d.join("standby.signal");
        if standby.is_some() {
            std::fs::write(&signal, b"").context("write standby.signal")?;
        } else if signal.exists() {
            std::fs::remove_file(&signal).context("remove standby.signal")?;
        }
        let _ = std::fs::remove_file(d.join("recovery.signal"));
        Ok(())
    }

    /// Do the parameters in effect differ from what the files say?
    pub fn parameters_changed(&self, dynamic: &BTreeMap<String, Value>) -> bool {
        let written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        match written.as_ref() {
            Some((_, params)) => *params != self.s.merged_parameters(dynamic),
            None => false,
        }
    }

    /// Re-render the files with the current parameters (same role) and reload.
    pub fn reload_config(&self, dynamic: &BTreeMap<String, Value>) -> Result<()> {
        let standby = self
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(s, _)| s.clone())
            .ok_or_else(|| anyhow!("no configuration written yet"))?;
        self.write_config(dynamic, standby, &self.hba_lines())?;
        self.reload()
    }

    /// postgres was promoted: it removed standby.signal itself, and later
    /// re-renderings (reloads, synchronous_standby_names) must not write the
    /// replica settings of its last start back into a primary's data directory.
    /// (They did: a crash then looked like a replica's, and pg_rewind's
    /// single-user recovery refused to run with standby.signal present.)
    pub fn mark_promoted(&self) {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((standby, _)) = written.as_mut() {
            *standby = None;
        }
        drop(written);
        let _ = std::fs::remove_file(self.data().join("standby.signal"));
    }

    /// Set `synchronous_standby_names`; a running postgres reloads it at once.
    pub fn set_sync_names(&self, dynamic: &BTreeMap<String, Value>, value: &str) -> Result<()> {
        *self.sync_names.lock().unwrap_or_else(|e| e.into_inner()) = value.to_string();
        let written = self
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if self.is_running() && written {
            self.reload_config(dynamic)?;
        }
        Ok(())
    }

    /// The pg_hba lines in effect (configured, or the defaults).
    pub fn hba_lines(&self) -> Vec<String> {
        let local = self.s.local.read().unwrap_or_else(|e| e.into_inner());
        local.pg_hba.clone().unwrap_or_else(|| {
            default_hba(
                &self.s.superuser,
                &self.s.replication.username,
                &super::conf::os_user(),
            )
        })
    }

    /// Replica settings for streaming from `src` (or from nobody).
    pub fn standby_conf(&self, src: Option<&Source>, use_slots: bool) -> StandbyConf {
        match src {
            Some(src) => StandbyConf {
                primary_conninfo: primary_conninfo(
                    &src.host,
                    src.port,
                    &self.s.replication,
                    // written by write_config before postgres reads it
                    self.s
                        .replication
                        .password
                        .as_ref()
                        .map(|_| self.s.pgpass.as_path()),
                    &self.s.name,
                ),
                primary_slot_name: use_slots
                    .then(|| crate::dcs::model::slot_name_for(&self.s.name)),
            },
            None => StandbyConf {
                primary_conninfo: String::new(),
                primary_slot_name: None,
            },
        }
    }

    /// The timeline history file of `timeline` from pg_wal: (timeline, switch lsn, reason).
    pub fn read_history_file(&self, timeline: u32) -> Result<Vec<(u32, u64, String)>> {
        let p = self
            .data()
            .join("pg_wal")
            .join(format!("{timeline:08X}.history"));
        let text = std::fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))?;
        Ok(parse_history_file(&text))
    }
}

fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp-agent");
    std::fs::write(&tmp, text).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
    Ok(())
}
