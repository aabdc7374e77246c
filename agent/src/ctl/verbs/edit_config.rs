//! `edit-config`: change the dynamic configuration (`-s`, `-p`, `--apply`,
//! `--replace`, or `$EDITOR`), show the diff, check it, confirm, and write it to etcd
//! with a compare-and-set on the revision read.

use std::io::IsTerminal;

use serde_json::{json, Value};

use super::common::{read, Ctx};
use crate::config::merge::{merge, Null};
use crate::ctl::args::EditConfigArgs;
use crate::ctl::{diff, edit, output, CtlError, CtlResult};

pub(super) async fn edit_config(ctx: &mut Ctx, a: EditConfigArgs) -> CtlResult<()> {
    let name = ctx.cfg.cluster_name(a.cluster.cluster.as_deref())?;
    let (etcd, cluster) = read(ctx, &name).await?;
    let Some(config) = &cluster.config else {
        return Err(CtlError::failed(format!(
            "The config key does not exist in the cluster {name}"
        )));
    };
    let before_data = if config.raw.is_object() {
        config.raw.clone()
    } else {
        json!({})
    };
    let before = output::yaml(&before_data);

    let mut changed = before_data.clone();
    let mut after: Option<String> = None;
    if let Some(f) = &a.replace {
        changed = Value::Object(edit::read_source(f)?);
        after = Some(output::yaml(&changed));
    }
    if let Some(f) = &a.apply {
        let patch = edit::read_source(f)?;
        let mut m = changed.as_object().cloned().unwrap_or_default();
        merge(&mut m, &patch, Null::Deletes);
        changed = Value::Object(m);
        after = Some(output::yaml(&changed));
    }
    if !a.set.is_empty() || !a.pg.is_empty() {
        changed = edit::apply_pairs(&changed, &a.set, &a.pg)?;
        after = Some(output::yaml(&changed));
    }
    let mut edited_file = None;
    let after = match after {
        Some(t) => t,
        None => {
            if !std::io::stdin().is_terminal() {
                return Err(CtlError::usage(
                    "refusing to start an editor: stdin is not a terminal; pass -s/--set, -p/--pg, --apply or --replace",
                ));
            }
            let (text, file) = edit::run_editor(&before, &name)?;
            changed = Value::Object(edit::parse_config_yaml(&text, "the edited configuration")?);
            edited_file = Some(file);
            text
        }
    };

    if changed == before_data {
        if !a.quiet {
            println!("Not changed");
        }
        return Ok(());
    }
    if !a.quiet {
        println!("{}", diff::render(&before, &after, ctx.tty_out));
    }
    if let Err(e) = crate::config::DynamicConfig::check_change(&before_data, &changed) {
        let kept = edited_file.as_mut().map(|f| {
            f.keep();
            format!(" (your edit is kept in {})", f.path.display())
        });
        return Err(CtlError::failed(format!(
            "invalid configuration, not applied: {e}{}",
            kept.unwrap_or_default()
        )));
    }
    let from_stdin = a.apply.as_deref() == Some("-") || a.replace.as_deref() == Some("-");
    if from_stdin && !a.force {
        return Err(CtlError::usage(
            "Use --force option to apply changes (stdin was read for the configuration, so there is no one to ask)",
        ));
    }
    if a.force || ctx.prompt.confirm("Apply these changes?", "--force")? {
        if !etcd.set_config(&changed, Some(config.mod_revision)).await? {
            return Err(CtlError::failed(
                "Config modification aborted due to concurrent changes",
            ));
        }
        println!("Configuration changed");
    }
    Ok(())
}
