//! Checksums in the encodings the two clouds use.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// CRC32C as GCS and S3 print it: base64 of the 4 big-endian bytes.
pub fn crc32c_b64(crc: u32) -> String {
    STANDARD.encode(crc.to_be_bytes())
}

/// Parses a base64 CRC32C back into its value.
pub fn crc32c_from_b64(s: &str) -> Option<u32> {
    let bytes = STANDARD.decode(s).ok()?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// MD5 in base64, as GCS's `md5Hash` field wants it.
pub fn md5_b64(md5: &[u8; 16]) -> String {
    STANDARD.encode(md5)
}

/// The MD5 hidden in an S3 ETag, when there is one: 32 hex digits (single-part upload). A
/// multipart ETag ends in `-N` and is no MD5 of the object; an ETag under SSE-KMS or SSE-C is no
/// MD5 either, which the caller rules out from the encryption headers.
pub fn md5_from_etag(etag: &str) -> Option<[u8; 16]> {
    let hex = etag.trim_matches('"');
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_published_check_value() {
        // RFC 3720 check value for "123456789".
        let crc = crc32c::crc32c(b"123456789");
        assert_eq!(crc, 0xE306_9283);
        assert_eq!(crc32c_b64(crc), "4waSgw==");
        assert_eq!(crc32c_from_b64("4waSgw=="), Some(crc));
        assert_eq!(crc32c_b64(0), "AAAAAA==");
    }

    #[test]
    fn etag_md5_only_for_single_part() {
        let md5 = md5_from_etag("\"d41d8cd98f00b204e9800998ecf8427e\"").expect("md5 etag");
        assert_eq!(md5_b64(&md5), "1B2M2Y8AsgTpgAmY7PhCfg==");
        assert_eq!(md5_from_etag("\"d41d8cd98f00b204e9800998ecf8427e-3\""), None);
        assert_eq!(md5_from_etag("zz1d8cd98f00b204e9800998ecf8427e"), None);
    }
}
