//! htpasswd files as NGINX's `auth_basic_user_file` reads them, for `auth-type: basic`.
//!
//! A file is parsed once, when the configuration is translated: one `user:hash` per line
//! (anything after a second `:` is a comment, as NGINX reads it), blank lines and lines
//! starting with `#` skipped. A line Sluice cannot use (no `:`, a hash in no format below) is
//! reported and left out, and the other users still sign in: NGINX, too, only fails the
//! users whose line it cannot verify.
//!
//! The hash formats are those NGINX accepts in practice, through its own code or the C
//! library's `crypt(3)` on Debian and Alpine images:
//!
//! | format | example | how |
//! |---|---|---|
//! | `{PLAIN}` | `{PLAIN}secret` | the password itself |
//! | `{SHA}` | `{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=` | base64 of its SHA-1 |
//! | `{SSHA}` | `{SSHA}…` | base64 of SHA-1(password + salt) followed by the salt |
//! | `$apr1$` | `htpasswd -m` | Apache's MD5-crypt |
//! | `$1$` | `openssl passwd -1` | MD5-crypt |
//! | `$5$`, `$6$` | `openssl passwd -5`, `-6`, `mkpasswd` | SHA-256-crypt, SHA-512-crypt |
//! | `$2y$`, `$2b$`, `$2a$` | `htpasswd -B` | bcrypt |
//!
//! Traditional DES `crypt` (13 characters, `htpasswd -d`) and yescrypt (`$y$`) are refused as
//! unsupported: DES crypt truncates passwords to 8 characters and is not offered by the
//! well-kept crates. Every comparison of a computed hash with the stored one takes the same
//! time whatever the bytes (`subtle`); a user who is not in the file costs the same
//! comparison against a dummy entry, so that timing does not tell which users exist.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use md5::{Digest, Md5};
use sha_crypt::PasswordVerifier;
use sha1::Digest as _;
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// A parsed htpasswd file.
#[derive(Clone, PartialEq, Eq)]
pub struct Htpasswd {
    /// Users in file order; the first line of a user wins, as NGINX reads the file top down.
    users: Vec<(String, Hash)>,
}

/// One user's password hash.
#[derive(Clone, PartialEq, Eq)]
enum Hash {
    Plain(Vec<u8>),
    /// SHA-1 of the password, and the salt appended to it (`{SSHA}`; empty for `{SHA}`).
    Sha1 {
        digest: [u8; 20],
        salt: Vec<u8>,
    },
    /// MD5-crypt: the magic (`$1$` or `$apr1$`), the salt, and the encoded hash.
    Md5Crypt {
        magic: &'static str,
        salt: Vec<u8>,
        encoded: Vec<u8>,
    },
    /// SHA-256-crypt or SHA-512-crypt, as written.
    ShaCrypt(String),
    /// bcrypt, as written.
    Bcrypt(String),
    /// A line that could not be used: its user never signs in.
    Unusable,
}

/// Why a line of a file was left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// The line's number, from 1.
    pub line: usize,
    /// What is wrong with it (never the hash itself).
    pub why: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.why)
    }
}

impl fmt::Debug for Htpasswd {
    /// Users only: hashes stay out of logs and debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Htpasswd").field("users", &self.users.len()).finish()
    }
}

impl Htpasswd {
    /// Parses an htpasswd file. Lines that cannot be used are left out and returned.
    pub fn parse(text: &str) -> (Self, Vec<LineError>) {
        let mut users: Vec<(String, Hash)> = Vec::new();
        let mut errors = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, rest)) = line.split_once(':') else {
                errors.push(LineError { line: i + 1, why: "no `user:hash` separator".into() });
                continue;
            };
            // NGINX stops the hash at the next `:` (a comment may follow).
            let hash = rest.split(':').next().unwrap_or_default();
            // The first line of a user decides, usable or not (NGINX stops at it).
            let known = users.iter().any(|(u, _)| u == user);
            match parse_hash(hash) {
                Ok(h) if !known => users.push((user.into(), h)),
                Ok(_) => {}
                Err(why) => {
                    errors.push(LineError { line: i + 1, why: format!("user {user:?}: {why}") });
                    if !known {
                        users.push((user.into(), Hash::Unusable));
                    }
                }
            }
        }
        (Self { users }, errors)
    }

    /// Builds a file from `user → hash` pairs (ingress-nginx's `auth-map` Secrets), as if
    /// each pair were a line, in the order given.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> (Self, Vec<LineError>) {
        let text: String = pairs.into_iter().map(|(u, h)| format!("{u}:{h}\n")).collect();
        Self::parse(&text)
    }

    /// How many users can sign in.
    pub fn len(&self) -> usize {
        self.users.iter().filter(|(_, h)| *h != Hash::Unusable).count()
    }

    /// Whether no user can sign in.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `password` is `user`'s.
    pub fn verify(&self, user: &[u8], password: &[u8]) -> bool {
        match self.users.iter().find(|(u, _)| u.as_bytes() == user) {
            Some((_, hash)) => hash.verify(password),
            None => {
                // The same work as for a user with a fast hash, so that a miss does not
                // answer sooner than a wrong password.
                let dummy = Hash::Sha1 { digest: [0; 20], salt: Vec::new() };
                let _ = dummy.verify(password);
                false
            }
        }
    }
}

/// The hash of one line.
fn parse_hash(hash: &str) -> Result<Hash, String> {
    if let Some(plain) = hash.strip_prefix("{PLAIN}") {
        return Ok(Hash::Plain(plain.as_bytes().to_vec()));
    }
    if let Some(b64) = hash.strip_prefix("{SHA}") {
        let raw = STANDARD.decode(b64).map_err(|_| "{SHA} hash is not base64".to_string())?;
        let digest = raw.try_into().map_err(|_| "{SHA} hash is not 20 bytes".to_string())?;
        return Ok(Hash::Sha1 { digest, salt: Vec::new() });
    }
    if let Some(b64) = hash.strip_prefix("{SSHA}") {
        let raw = STANDARD.decode(b64).map_err(|_| "{SSHA} hash is not base64".to_string())?;
        if raw.len() <= 20 {
            return Err("{SSHA} hash has no salt".into());
        }
        let digest = raw[..20].try_into().expect("20 bytes");
        return Ok(Hash::Sha1 { digest, salt: raw[20..].to_vec() });
    }
    for magic in ["$apr1$", "$1$"] {
        if let Some(rest) = hash.strip_prefix(magic) {
            let (salt, encoded) = rest.split_once('$').ok_or("MD5-crypt hash without a salt")?;
            if salt.len() > 8 || encoded.len() != 22 {
                return Err("malformed MD5-crypt hash".into());
            }
            return Ok(Hash::Md5Crypt {
                magic,
                salt: salt.as_bytes().to_vec(),
                encoded: encoded.as_bytes().to_vec(),
            });
        }
    }
    if hash.starts_with("$5$") || hash.starts_with("$6$") {
        sha_crypt::PasswordHashRef::new(hash)
            .map_err(|_| "malformed SHA-crypt hash".to_string())?;
        return Ok(Hash::ShaCrypt(hash.to_string()));
    }
    if ["$2y$", "$2b$", "$2a$", "$2x$"].iter().any(|p| hash.starts_with(p)) {
        hash.parse::<bcrypt::HashParts>().map_err(|_| "malformed bcrypt hash".to_string())?;
        return Ok(Hash::Bcrypt(hash.to_string()));
    }
    if hash.starts_with("$y$") {
        return Err("yescrypt ($y$) hashes are not supported; use bcrypt (htpasswd -B)".into());
    }
    if hash.len() == 13 && !hash.starts_with('$') {
        return Err(
            "DES crypt hashes (htpasswd -d) are not supported; use bcrypt (htpasswd -B)".into()
        );
    }
    Err("not a hash format NGINX accepts ({PLAIN}, {SHA}, {SSHA}, $apr1$, $1$, $5$, $6$, $2y$)"
        .into())
}

impl Hash {
    fn verify(&self, password: &[u8]) -> bool {
        match self {
            Hash::Plain(p) => p.ct_eq(password).into(),
            Hash::Sha1 { digest, salt } => {
                let mut h = Sha1::new();
                h.update(password);
                h.update(salt);
                let computed: [u8; 20] = h.finalize().into();
                computed.ct_eq(digest).into()
            }
            Hash::Md5Crypt { magic, salt, encoded } => {
                md5_crypt(password, salt, magic.as_bytes()).ct_eq(encoded).into()
            }
            // Both compare in constant time.
            Hash::ShaCrypt(h) => {
                sha_crypt::ShaCrypt::default().verify_password(password, h.as_str()).is_ok()
            }
            Hash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            Hash::Unusable => false,
        }
    }
}

/// MD5-crypt (Poul-Henning Kamp's, FreeBSD's `$1$`; Apache's `$apr1$` differs only in the
/// magic): the 22 encoded characters after the salt. No well-kept crate offers `$apr1$` on
/// the `md-5` the project already builds; the algorithm is short and fixed.
fn md5_crypt(password: &[u8], salt: &[u8], magic: &[u8]) -> [u8; 22] {
    let alt =
        Md5::new().chain_update(password).chain_update(salt).chain_update(password).finalize();
    let mut ctx = Md5::new().chain_update(password).chain_update(magic).chain_update(salt);
    for chunk in (0..password.len()).step_by(16) {
        ctx.update(&alt[..(password.len() - chunk).min(16)]);
    }
    let mut i = password.len();
    while i != 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut fin = ctx.finalize();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(password);
        } else {
            c.update(fin);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 == 1 {
            c.update(fin);
        } else {
            c.update(password);
        }
        fin = c.finalize();
    }
    const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = [0u8; 22];
    let mut at = 0;
    let mut put = |mut v: u32, n: usize| {
        for _ in 0..n {
            out[at] = ITOA64[(v & 0x3f) as usize];
            v >>= 6;
            at += 1;
        }
    };
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put(u32::from(fin[a]) << 16 | u32::from(fin[b]) << 8 | u32::from(fin[c]), 4);
    }
    put(u32::from(fin[11]), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Hashes of "password" (and one of "secret"), made with the tools operators use:
    // `htpasswd -m/-B/-s`, `openssl passwd -1/-5/-6`, `slappasswd -h {SSHA}`.
    const FILE: &str = "\
# a comment
apr1:$apr1$lZL6V/ci$eIMz/iKDkbtys/uU7LEK00
md5:$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/
sha256:$5$saltsalt$gOjOtoMpVhru2uyjeJSEc/JaLQWOXMNmlOnj6T4AtC.
sha512:$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/
bcrypt:$2y$05$bvIG6Nmid91Mu9RcmmWZfO5HJIMCT8riNW0hEp8f6/FuA2/mHZFpe
sha:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=
plain:{PLAIN}password
plain:{PLAIN}shadowed by the line above
broken
des:abJnggxhB/yWI
ssha:{SSHA}5pmir/MWVGUD2YIRMiLpX3YDrjRzYWx0eXNhbA==:a comment

bob:{PLAIN}secret
";

    #[test]
    fn every_format_verifies_its_password_only() {
        let (file, errors) = Htpasswd::parse(FILE);
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![10, 11], "{errors:?}");
        assert!(errors[1].why.contains("DES"), "{errors:?}");
        for user in ["apr1", "md5", "sha256", "sha512", "bcrypt", "sha", "plain", "ssha"] {
            assert!(file.verify(user.as_bytes(), b"password"), "{user}");
            assert!(!file.verify(user.as_bytes(), b"passwore"), "{user}");
            assert!(!file.verify(user.as_bytes(), b""), "{user}");
        }
        assert!(file.verify(b"bob", b"secret"));
        assert!(!file.verify(b"nobody", b"password"));
        assert!(!file.verify(b"broken", b""));
        assert_eq!(file.len(), 9);
        // An unusable first line locks its user out, whatever lines follow.
        let (file, _) = Htpasswd::parse("foo:\nfoo:{PLAIN}bar\n");
        assert!(!file.verify(b"foo", b"bar"));
    }

    #[test]
    fn md5_crypt_matches_known_vectors() {
        assert_eq!(&md5_crypt(b"password", b"lZL6V/ci", b"$apr1$"), b"eIMz/iKDkbtys/uU7LEK00");
        // A password longer than 16 bytes takes the chunked path.
        let long = b"correct horse battery staple";
        assert_ne!(md5_crypt(long, b"abc", b"$1$"), md5_crypt(&long[..16], b"abc", b"$1$"));
    }

    #[test]
    fn auth_maps_read_as_lines() {
        let (file, errors) = Htpasswd::from_pairs([("a", "{PLAIN}x"), ("b", "nope")]);
        assert_eq!(file.len(), 1);
        assert_eq!(errors.len(), 1);
        assert!(file.verify(b"a", b"x"));
        assert!(!format!("{file:?}").contains("{PLAIN}"));
    }
}
