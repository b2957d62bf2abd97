//! The one bounded reader of HTTP bodies, for the token flow and both clients: a body over its
//! bound is refused before it is read (from `Content-Length`) or as soon as it passes it.

/// Why a body was not read.
#[derive(Debug)]
pub enum BodyError {
    /// More than the bound arrived, or was announced.
    TooLarge { limit: u64 },
    /// The connection failed (or timed out) while the body arrived.
    Transport(reqwest::Error),
}

/// Reads `resp`'s body, at most `limit` bytes.
pub async fn read_limited(mut resp: reqwest::Response, limit: u64) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|l| l > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    // Sized once when the server says how much comes (within the limit): no regrowth copies.
    let mut out = Vec::with_capacity(resp.content_length().unwrap_or(0).min(limit) as usize);
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(BodyError::TooLarge { limit });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
