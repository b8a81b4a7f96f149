//! SHA-1, SHA-256 and HMAC-SHA1 through the OpenSSL that libssh2 already links: host-key
//! fingerprints and OpenSSH's hashed known_hosts names.

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut md = [0u8; 32];
    // SAFETY: reads `data.len()` bytes from `data`, writes 32 bytes into `md`.
    unsafe { openssl_sys::SHA256(data.as_ptr(), data.len(), md.as_mut_ptr()) };
    md
}

fn sha1(data: &[u8]) -> [u8; 20] {
    let mut md = [0u8; 20];
    // SAFETY: reads `data.len()` bytes from `data`, writes 20 bytes into `md`.
    unsafe { openssl_sys::SHA1(data.as_ptr(), data.len(), md.as_mut_ptr()) };
    md
}

/// HMAC-SHA1 (RFC 2104), as OpenSSH hashes known_hosts names (`|1|salt|hash`).
pub fn hmac_sha1(key: &[u8], message: &[u8]) -> [u8; 20] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..20].copy_from_slice(&sha1(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Vec::with_capacity(64 + message.len());
    inner.extend(k.iter().map(|b| b ^ 0x36));
    inner.extend_from_slice(message);
    let mut outer = Vec::with_capacity(84);
    outer.extend(k.iter().map(|b| b ^ 0x5c));
    outer.extend_from_slice(&sha1(&inner));
    sha1(&outer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // RFC 2202 test case 2.
        let mac = hmac_sha1(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
        let d = sha256(b"abc");
        assert_eq!(d[0], 0xba);
        assert_eq!(d[31], 0xad);
    }
}
