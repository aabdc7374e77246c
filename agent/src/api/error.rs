//! The one error type of the API: every refusal is a status code and
//! `{"error": "..."}`, so handlers return `Result<_, ApiError>` and use `?`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// What a handler answers with: its response, or a refusal.
pub type Answer = Result<Response, ApiError>;

/// Every error the API answers with: a status code and `{"error": "..."}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The answer depends on state the agent does not have yet (etcd not read).
    #[error("{0}")]
    Unavailable(String),
    /// Like Patroni's `/config` when the cluster has no configuration key.
    #[error("{0}")]
    BadGateway(String),
    /// A control request refused with Patroni's status code and words
    /// (patronictl shows the message).
    #[error("{message}")]
    Refused { status: StatusCode, message: String },
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Refused { status, .. } => *status,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), Json(json!({"error": self.to_string()}))).into_response()
    }
}

/// A control request refused: `status` and Patroni's message.
pub fn refuse(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError::Refused {
        status,
        message: message.into(),
    }
}

/// A successful answer in Patroni's plain text (patronictl prints it).
pub fn text(status: StatusCode, body: impl Into<String>) -> Answer {
    Ok((status, body.into()).into_response())
}

/// An answer from the HA loop (`code`, message): plain text when it succeeded,
/// a refusal otherwise (500 when the code is not a status code at all).
pub fn answer(code: u16, message: String) -> Answer {
    match StatusCode::from_u16(code) {
        Ok(status) if status.is_success() => text(status, message),
        Ok(status) => Err(refuse(status, message)),
        Err(_) => Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_answers_keep_their_code_and_shape() {
        let ok = answer(202, "reload scheduled".into()).expect("success");
        assert_eq!(ok.status(), StatusCode::ACCEPTED);
        let err = answer(503, "busy".into()).expect_err("refusal");
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.to_string(), "busy");
        let odd = answer(42, "odd".into()).expect_err("not a status code");
        assert_eq!(odd.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
