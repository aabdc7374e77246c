//! Requests to members' REST APIs, as patronictl sends them: to the scheme and
//! address of the member's `api_url`, Basic auth on every request, JSON bodies.
//!
//! Rule: every request has a timeout; a failure is a one-line message.

use std::time::Duration;

use serde_json::Value;

use crate::config::BasicAuth;
use crate::dcs::model::Member;
use crate::tls::client::ClientSettings;

/// What a member answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub text: String,
}

impl Reply {
    pub fn ok(&self) -> bool {
        self.status < 400
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.text).ok()
    }

    /// The text to show: the `error` of a `{"error": ...}` body, else the body.
    pub fn message(&self) -> String {
        match self.json() {
            Some(Value::Object(m)) if m.len() == 1 => match m.get("error") {
                Some(Value::String(e)) => e.clone(),
                _ => self.text.trim_end().to_string(),
            },
            _ => self.text.trim_end().to_string(),
        }
    }
}

/// `http://host:port/patroni` + `restart` -> `http://host:port/restart`.
pub fn endpoint_url(api_url: &str, endpoint: &str) -> Option<String> {
    let (scheme, rest) = api_url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() {
        return None;
    }
    Some(format!(
        "{scheme}://{authority}/{}",
        endpoint.trim_start_matches('/')
    ))
}

/// Why a request got no answer. `unreachable`: it surely did not reach the member
/// (no address, connection refused), so falling back to etcd cannot double an action.
#[derive(Debug, Clone, PartialEq)]
pub struct CallError {
    pub unreachable: bool,
    pub message: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Clone)]
pub struct Rest {
    client: reqwest::Client,
    auth: Option<BasicAuth>,
}

impl Rest {
    pub fn new(auth: Option<BasicAuth>, tls: &ClientSettings) -> Result<Rest, String> {
        let client = tls
            .http_client_builder()
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(2))
            .user_agent(concat!("agentctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Rest { client, auth })
    }

    /// `method endpoint` on `member`, waiting at most `timeout`.
    pub async fn call(
        &self,
        member: &Member,
        method: reqwest::Method,
        endpoint: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Reply, CallError> {
        let unusable = |message: String| CallError {
            unreachable: true,
            message,
        };
        let api = member
            .data
            .api_url
            .as_deref()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| unusable(format!("member {} publishes no api_url", member.name)))?;
        let url = endpoint_url(api, endpoint)
            .ok_or_else(|| unusable(format!("member {}: cannot use api_url {api}", member.name)))?;
        let mut req = self.client.request(method, &url).timeout(timeout);
        if let Some(a) = &self.auth {
            req = req.basic_auth(&a.username, Some(&a.password));
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.map_err(|e| describe(&url, &e))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| describe(&url, &e))?;
        Ok(Reply { status, text })
    }
}

fn describe(url: &str, e: &reqwest::Error) -> CallError {
    let what = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        // the innermost cause says the most (connection refused, ...)
        let mut msg = e.to_string();
        let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
        while let Some(s) = src {
            msg = s.to_string();
            src = s.source();
        }
        msg
    };
    CallError {
        unreachable: e.is_connect() || e.is_builder(),
        message: format!("{url}: {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        let r = |text: &str| Reply {
            status: 412,
            text: text.into(),
        };
        assert_eq!(
            r(r#"{"error":"no good candidates"}"#).message(),
            "no good candidates"
        );
        assert_eq!(r("plain text\n").message(), "plain text");
        assert_eq!(
            r(r#"{"error":"x","more":1}"#).message(),
            r#"{"error":"x","more":1}"#
        );
    }

    #[test]
    fn endpoints_replace_the_path() {
        assert_eq!(
            endpoint_url("http://127.0.0.1:8008/patroni", "restart").as_deref(),
            Some("http://127.0.0.1:8008/restart")
        );
        assert_eq!(
            endpoint_url("https://db1:8443", "/switchover").as_deref(),
            Some("https://db1:8443/switchover")
        );
        assert_eq!(
            endpoint_url("http://[::1]:8008/patroni?x", "config").as_deref(),
            Some("http://[::1]:8008/config")
        );
        assert_eq!(endpoint_url("127.0.0.1:8008", "x"), None);
        assert_eq!(endpoint_url("http:///x", "x"), None);
    }

    #[tokio::test]
    async fn an_unreachable_member_is_an_error_not_a_hang() {
        let rest = Rest::new(None, &ClientSettings::default()).unwrap();
        let m = Member {
            name: "n".into(),
            lease: 0,
            mod_revision: 0,
            data: crate::dcs::model::MemberData {
                // port 9 (discard) on loopback: nothing listens
                api_url: Some("http://127.0.0.1:9/patroni".into()),
                ..Default::default()
            },
        };
        let e = rest
            .call(
                &m,
                reqwest::Method::GET,
                "patroni",
                None,
                Duration::from_secs(2),
            )
            .await
            .unwrap_err();
        assert!(e.message.starts_with("http://127.0.0.1:9/patroni: "), "{e}");
        assert!(e.unreachable);
        let no_url = Member {
            data: Default::default(),
            ..m
        };
        let e = rest
            .call(
                &no_url,
                reqwest::Method::GET,
                "patroni",
                None,
                Duration::from_secs(1),
            )
            .await
            .unwrap_err();
        assert_eq!(e.message, "member n publishes no api_url");
    }
}
