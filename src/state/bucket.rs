//! Key format 1 (releases before the chunked store), read only to migrate it: the `events` tree
//! held one value per 10-minute bucket of event time, keyed by the bucket's start time
//! (sign-flipped big-endian seconds). Value layout, repeated per entry: a tag byte (bit 0:
//! phase end; bit 1: the session id is packed lowercase hex, as in format 2), the stored id's
//! length (u16, big-endian), the id, and the event time as seconds after the bucket's start
//! (u16, big-endian).

use super::StateError;

/// Width of one format-1 bucket.
pub const BUCKET_SECS: i64 = 600;
const SIGN: u64 = 1 << 63;

/// The start (unix seconds) of the bucket stored under `key`.
pub fn bucket_start(key: &[u8]) -> Result<i64, StateError> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| StateError::Corrupt(format!("a format-1 bucket key has {} bytes, not 8", key.len())))?;
    Ok(((u64::from_be_bytes(bytes) ^ SIGN) as i64).div_euclid(BUCKET_SECS) * BUCKET_SECS)
}

/// The entries of one format-1 bucket: (event time, packed key), sorted.
pub fn decode(key: &[u8], mut v: &[u8]) -> Result<Vec<(i64, Vec<u8>)>, StateError> {
    let base = bucket_start(key)?;
    let corrupt = || StateError::Corrupt(format!("the format-1 bucket at {base} has a truncated entry"));
    let mut out = Vec::new();
    while !v.is_empty() {
        let len = v
            .get(1..3)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
            .ok_or_else(corrupt)?;
        let entry = v.get(..3 + len + 2).ok_or_else(corrupt)?;
        let mut packed = Vec::with_capacity(1 + len);
        packed.push(entry[0]);
        packed.extend_from_slice(&entry[3..3 + len]);
        let offset = u16::from_be_bytes([entry[3 + len], entry[4 + len]]);
        out.push((base + i64::from(offset), packed));
        v = &v[3 + len + 2..];
    }
    out.sort_unstable();
    Ok(out)
}

/// Format-1 bytes of `entries` (event time, packed key), all in the bucket starting at `base`,
/// as the previous release wrote them; for tests of the migration.
#[cfg(test)]
pub fn encode(base: i64, entries: &[(i64, Vec<u8>)]) -> (Vec<u8>, Vec<u8>) {
    let mut out = Vec::new();
    for (t, k) in entries {
        out.push(k[0]);
        out.extend_from_slice(&((k.len() - 1) as u16).to_be_bytes());
        out.extend_from_slice(&k[1..]);
        out.extend_from_slice(&((t - base) as u16).to_be_bytes());
    }
    (((base as u64) ^ SIGN).to_be_bytes().to_vec(), out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::chunk::pack;

    #[test]
    fn decodes_what_format_1_wrote() {
        // Bytes as the previous release's `Bucket::encode` laid them out.
        let entries = vec![
            (
                601,
                pack(
                    "Odd Id|with:colons:start"
                        .parse::<crate::key::EventKey>()
                        .unwrap()
                        .as_ref(),
                ),
            ),
            (
                605,
                pack(
                    "e7acacb6aedbab70073456da5744166939b77527:end"
                        .parse::<crate::key::EventKey>()
                        .unwrap()
                        .as_ref(),
                ),
            ),
        ];
        let (key, value) = encode(600, &entries);
        assert_eq!(value.len(), (4 + 19) + (4 + 21));
        assert_eq!(decode(&key, &value).unwrap(), entries);
        assert!(decode(&key, &value[..value.len() - 1]).is_err());
        assert!(decode(&key[..7], &value).is_err());
        assert_eq!(bucket_start(&encode(-600, &[]).0).unwrap(), -600);
    }
}
