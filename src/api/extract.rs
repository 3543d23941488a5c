//! Request parsing shared by every handler: path parameters, strict query
//! strings and page bounds. Each failure is a 400 with a stable code.
//!
//! Query strings are strict: known keys only, each at most once, numbers in
//! canonical decimal. No parameter needs percent-encoding, so it is
//! rejected rather than decoded.

use super::ApiError;
use crate::encoding::parse_canonical_u64;
use crate::error::Error;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

const MAX_QUERY: usize = 512;
/// Default page size.
pub const DEFAULT_LIMIT: u64 = 100;

/// Path parameters, with a JSON 400 (`bad_path`) instead of axum's text.
pub struct PathParam<T>(pub T);

impl<S, T> FromRequestParts<S> for PathParam<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(PathParam(v)),
            Err(e) => Err(Error::bad("bad_path", e.body_text()).into()),
        }
    }
}

/// A canonical decimal path segment.
pub fn path_u64(s: &str, name: &str) -> Result<u64, Error> {
    parse_canonical_u64(s).ok_or_else(|| {
        Error::bad(
            "bad_number",
            format!("{name} must be a canonical non-negative integer"),
        )
    })
}

/// A UUID in its one canonical text form: lowercase, hyphenated.
pub fn parse_uuid(s: &str, code: &'static str, name: &str) -> Result<uuid::Uuid, Error> {
    uuid::Uuid::try_parse(s)
        .ok()
        .filter(|u| u.hyphenated().to_string() == s)
        .ok_or_else(|| Error::bad(code, format!("{name} must be a lowercase hyphenated UUID")))
}

/// A handler's query parameters: one type describes them in the API
/// description (`utoipa::IntoParams`) and names the only keys its query
/// string may have, so the two cannot drift apart.
pub trait QueryParams: utoipa::IntoParams {
    /// The parameters' names, in order.
    fn names() -> &'static [String];
}

/// The names of `T`'s query parameters.
pub fn param_names<T: utoipa::IntoParams>() -> Vec<String> {
    T::into_params(|| Some(utoipa::openapi::path::ParameterIn::Query))
        .into_iter()
        .map(|p| p.name)
        .collect()
}

/// Implement [`QueryParams`] for parameter types, computing each one's
/// names once.
macro_rules! query_params {
    ($($t:ty),* $(,)?) => {$(
        impl $crate::api::extract::QueryParams for $t {
            fn names() -> &'static [String] {
                static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
                NAMES.get_or_init($crate::api::extract::param_names::<$t>)
            }
        }
    )*};
}
pub(crate) use query_params;

pub struct Query<'a> {
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> Query<'a> {
    /// Parse a query string whose keys are `P`'s parameters.
    pub fn of<P: QueryParams>(q: Option<&'a str>) -> Result<Self, Error> {
        Self::parse(q, P::names())
    }

    fn parse(q: Option<&'a str>, allowed: &[String]) -> Result<Self, Error> {
        let q = q.unwrap_or("");
        if q.len() > MAX_QUERY {
            return Err(Error::bad("bad_query", "query string too long"));
        }
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        for part in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| Error::bad("bad_query", format!("{part:?} is not key=value")))?;
            if !allowed.iter().any(|a| a == k) {
                return Err(Error::bad("bad_query", format!("unknown parameter {k:?}")));
            }
            if pairs.iter().any(|(pk, _)| *pk == k) {
                return Err(Error::bad(
                    "bad_query",
                    format!("parameter {k:?} given twice"),
                ));
            }
            pairs.push((k, v));
        }
        Ok(Query { pairs })
    }

    pub fn str(&self, key: &str) -> Option<&'a str> {
        self.pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    pub fn u64(&self, key: &str) -> Result<Option<u64>, Error> {
        match self.str(key) {
            None => Ok(None),
            Some(v) => parse_canonical_u64(v).map(Some).ok_or_else(|| {
                Error::bad(
                    "bad_number",
                    format!("{key} must be a canonical non-negative integer, got {v:?}"),
                )
            }),
        }
    }

    /// `true` or `false` (absent: false).
    pub fn flag(&self, key: &str) -> Result<bool, Error> {
        match self.str(key) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(Error::bad(
                "bad_query",
                format!("{key} must be true or false"),
            )),
        }
    }

    /// A required parameter.
    pub fn required(&self, key: &str) -> Result<&'a str, Error> {
        self.str(key)
            .ok_or_else(|| Error::bad("bad_query", format!("{key} is required")))
    }
}

/// A page of a list: `start` (default 0) and `limit` (1..=max, default
/// [`DEFAULT_LIMIT`]).
#[derive(Clone, Copy, Debug)]
pub struct Page {
    pub start: u64,
    pub limit: u64,
}

impl Page {
    pub fn parse(q: &Query<'_>, max: u64) -> Result<Page, Error> {
        let start = q.u64("start")?.unwrap_or(0);
        let limit = q.u64("limit")?.unwrap_or(DEFAULT_LIMIT.min(max));
        if limit == 0 || limit > max {
            return Err(Error::bad("bad_limit", format!("limit must be 1..={max}")));
        }
        Ok(Page { start, limit })
    }
}
