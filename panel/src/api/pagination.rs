//! Cursor pagination: newest first, the cursor is the last item's `(created_at, id)`, opaque
//! to clients (base64url). Stable under inserts, unlike offsets.

use super::problem::ApiError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub const DEFAULT_LIMIT: i64 = 25;
pub const MAX_LIMIT: i64 = 100;

pub type Cursor = (DateTime<Utc>, Uuid);

pub fn encode(at: DateTime<Utc>, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{id}", at.timestamp_micros()))
}

pub fn decode(s: &str) -> Result<Cursor, ApiError> {
    let bad = || ApiError::validation("cursor", "not a cursor from a previous page's next_cursor");
    let raw = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
    let text = std::str::from_utf8(&raw).map_err(|_| bad())?;
    let (micros, id) = text.split_once(':').ok_or_else(bad)?;
    let at = DateTime::from_timestamp_micros(micros.parse().map_err(|_| bad())?).ok_or_else(bad)?;
    // Only times a row can have: PostgreSQL refuses some that chrono accepts (before 4713 BC).
    if !(2000..=9999).contains(&chrono::Datelike::year(&at)) {
        return Err(bad());
    }
    Ok((at, id.parse().map_err(|_| bad())?))
}

/// The page size asked for, checked.
pub fn limit(asked: Option<i64>) -> Result<i64, ApiError> {
    match asked {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::validation("limit", format!("between 1 and {MAX_LIMIT}"))),
    }
}

/// Splits one extra fetched row off into the next cursor.
pub fn page<T>(mut rows: Vec<T>, limit: i64, key: impl Fn(&T) -> Cursor) -> (Vec<T>, Option<String>) {
    if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        let next = rows.last().map(|r| {
            let (at, id) = key(r);
            encode(at, id)
        });
        (rows, next)
    } else {
        (rows, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_a_validation_error() {
        let at = DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap();
        let id = Uuid::new_v4();
        assert_eq!(decode(&encode(at, id)).unwrap(), (at, id));
        assert!(matches!(decode("nope"), Err(ApiError::Validation { .. })));
        let ancient = URL_SAFE_NO_PAD.encode(format!("-3200000000000000000:{}", Uuid::nil()));
        assert!(matches!(decode(&ancient), Err(ApiError::Validation { .. })), "a time PostgreSQL cannot hold is refused, not sent");
        assert!(matches!(limit(Some(0)), Err(ApiError::Validation { .. })));
        assert_eq!(limit(None).unwrap(), DEFAULT_LIMIT);
    }
}
