//! `/config`: `GET` answers from the snapshot; `PATCH` merges into (with
//! [`crate::config::merge`], Patroni's `patch_config`) and `PUT` replaces the
//! dynamic configuration in etcd (compare-and-set on its revision), then wakes
//! the HA loop to apply it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Map, Value};

use crate::api::control::{body_object, control, read_cluster, Control};
use crate::api::error::{refuse, Answer, ApiError};
use crate::api::ApiState;
use crate::config::merge::{merge, Null};
use crate::config::DynamicConfig;

/// `GET /config`: the dynamic configuration exactly as stored in etcd.
pub(in crate::api) async fn get_config(
    State(api): State<ApiState>,
) -> Result<Json<Value>, ApiError> {
    let st = api.snapshot();
    match st.cluster.as_ref().and_then(|c| c.config.as_ref()) {
        Some(config) if config.raw.is_object() => Ok(Json(config.raw.clone())),
        // a garbled key reads as an empty configuration, as in Patroni
        Some(_) => Ok(Json(json!({}))),
        None => Err(ApiError::BadGateway(
            "no cluster configuration known".into(),
        )),
    }
}

/// `PATCH /config`: merge into the dynamic configuration, compare-and-set.
pub(in crate::api) async fn patch_config_route(
    State(state): State<ApiState>,
    body: axum::body::Bytes,
) -> Answer {
    let c = control(&state)?;
    let patch = body_object(&body, false)?;
    let cluster = read_cluster(c).await?;
    let Some(cfg) = &cluster.config else {
        return Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the cluster has no configuration in etcd",
        ));
    };
    let mut data = match &cfg.raw {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    // Patroni's patch_config: write only when something changed
    if merge(&mut data, &patch, Null::Deletes) {
        let value = Value::Object(data.clone());
        DynamicConfig::check_change(&cfg.raw, &value).map_err(|e| {
            refuse(
                StatusCode::BAD_REQUEST,
                format!("invalid configuration: {e}"),
            )
        })?;
        write_config(
            c,
            &value,
            Some(cfg.mod_revision),
            StatusCode::SERVICE_UNAVAILABLE,
        )
        .await?;
    }
    c.wake.notify_one();
    Ok((StatusCode::OK, Json(Value::Object(data))).into_response())
}

/// `PUT /config`: replace the dynamic configuration.
pub(in crate::api) async fn put_config_route(
    State(state): State<ApiState>,
    body: axum::body::Bytes,
) -> Answer {
    let c = control(&state)?;
    let new = Value::Object(body_object(&body, false)?);
    DynamicConfig::from_json(&new).map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("invalid configuration: {e}"),
        )
    })?;
    let cluster = read_cluster(c).await?;
    let rev = cluster.config.as_ref().map(|c| c.mod_revision);
    if cluster.config.as_ref().map(|c| &c.raw) != Some(&new) {
        write_config(c, &new, rev, StatusCode::BAD_GATEWAY).await?;
    }
    c.wake.notify_one();
    Ok((StatusCode::OK, Json(new)).into_response())
}

/// Write the configuration if its key is still at `rev`; a failed write
/// answers with `failed` (today 503 for `PATCH`, 502 for `PUT`).
async fn write_config(
    c: &Control,
    value: &Value,
    rev: Option<i64>,
    failed: StatusCode,
) -> Result<(), ApiError> {
    match c.etcd.set_config(value, rev).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(refuse(
            StatusCode::CONFLICT,
            "the configuration was changed concurrently; retry",
        )),
        Err(e) => Err(refuse(
            failed,
            format!("cannot write the configuration: {e}"),
        )),
    }
}
