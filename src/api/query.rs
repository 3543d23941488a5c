//! Strict query strings: known keys only, each at most once, numbers in
//! canonical decimal. Percent-encoding is not needed by any parameter and is
//! rejected rather than decoded.

use crate::error::Error;
use crate::note::parse_canonical_u64;

const MAX_QUERY: usize = 512;

pub struct Query<'a> {
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> Query<'a> {
    pub fn parse(q: Option<&'a str>, allowed: &[&str]) -> Result<Self, Error> {
        let q = q.unwrap_or("");
        if q.len() > MAX_QUERY {
            return Err(Error::bad("bad_query", "query string too long"));
        }
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        for part in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| Error::bad("bad_query", format!("{part:?} is not key=value")))?;
            if !allowed.contains(&k) {
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
}
