//! PostgreSQL connection URLs (`postgresql://user[:password]@host[:port][/db][?k=v…]`),
//! parsed just enough to mask the password, strip it before a URL reaches a child process's
//! command line, and point the URL at another database.

use std::fmt;

/// A connection URL. `Display` and `Debug` mask the password; [`PgUrl::conninfo`] is the URL
/// without it (for command lines); [`PgUrl::password`] is passed through `PGPASSWORD` only.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl {
    scheme: String,
    /// Percent-encoded, as written.
    user: Option<String>,
    /// Percent-encoded, as written.
    password: Option<String>,
    /// `host[:port][,host[:port]…]`, as written.
    hosts: String,
    /// Percent-encoded, as written; `None` when the URL names no database.
    dbname: Option<String>,
    /// Query parameters other than `password`, as written.
    params: Vec<(String, String)>,
}

impl PgUrl {
    /// Parses a `postgresql://` or `postgres://` URL. Errors never repeat the password.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (scheme, rest) = text
            .split_once("://")
            .filter(|(s, _)| matches!(*s, "postgresql" | "postgres"))
            .ok_or_else(|| {
                "not a PostgreSQL URL; expected postgresql://user@host:port/dbname".to_string()
            })?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (rest, None),
        };
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, mut password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((name, pw)) => (Some(name.to_string()), Some(pw.to_string())),
                None => (Some(u.to_string()), None),
            },
        };
        let user = user.filter(|u| !u.is_empty());
        if let Some(u) = &user {
            decode(u).map_err(|e| format!("user name: {e}"))?;
        }
        if let Some(pw) = &password {
            decode(pw).map_err(|_| "the password is not validly percent-encoded".to_string())?;
        }
        if hosts.contains(char::is_whitespace) {
            return Err("host must not contain spaces".into());
        }
        for host in hosts.split(',').filter(|h| !h.is_empty()) {
            if let Some(port) = port_of(host)
                && !matches!(port.parse::<u16>(), Ok(p) if p != 0)
            {
                return Err(format!("invalid port {port:?}"));
            }
        }
        let dbname = path.filter(|p| !p.is_empty()).map(str::to_string);
        if let Some(db) = &dbname {
            decode(db).map_err(|e| format!("database name: {e}"))?;
        }
        let mut params = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("query parameter {:?} has no value", mask_pair(pair)))?;
            if k == "password" {
                decode(v).map_err(|_| "the password is not validly percent-encoded".to_string())?;
                password.get_or_insert_with(|| v.to_string());
            } else {
                params.push((k.to_string(), v.to_string()));
            }
        }
        Ok(PgUrl {
            scheme: scheme.to_string(),
            user,
            password,
            hosts: hosts.to_string(),
            dbname,
            params,
        })
    }

    fn render(&self, password: Option<&str>) -> String {
        let mut s = format!("{}://", self.scheme);
        if let Some(u) = &self.user {
            s.push_str(u);
        }
        if let Some(pw) = password {
            s.push(':');
            s.push_str(pw);
        }
        if self.user.is_some() || password.is_some() {
            s.push('@');
        }
        s.push_str(&self.hosts);
        if let Some(db) = &self.dbname {
            s.push('/');
            s.push_str(db);
        }
        for (i, (k, v)) in self.params.iter().enumerate() {
            s.push(if i == 0 { '?' } else { '&' });
            s.push_str(k);
            s.push('=');
            s.push_str(v);
        }
        s
    }

    /// The URL without its password: what a child process gets on its command line.
    pub fn conninfo(&self) -> String {
        self.render(None)
    }

    /// The URL with its password shown as `***`: what messages show.
    pub fn masked(&self) -> String {
        self.render(self.password.as_ref().map(|_| "***"))
    }

    /// The decoded password, if the URL has one (passed to children as `PGPASSWORD`).
    pub fn password(&self) -> Option<String> {
        self.password.as_deref().and_then(|p| decode(p).ok())
    }

    /// Strings that must never appear in a message: the password as written and decoded.
    pub fn secrets(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(raw) = &self.password {
            v.push(raw.clone());
            if let Ok(d) = decode(raw)
                && d != *raw
            {
                v.push(d);
            }
        }
        v.retain(|s| !s.is_empty());
        v
    }

    /// The decoded database name, if the URL names one.
    pub fn dbname(&self) -> Option<String> {
        self.dbname.as_deref().and_then(|d| decode(d).ok())
    }

    /// The decoded user name, if the URL names one.
    pub fn user(&self) -> Option<String> {
        self.user.as_deref().and_then(|u| decode(u).ok())
    }

    /// The same server and credentials, database `name`.
    pub fn with_dbname(&self, name: &str) -> PgUrl {
        PgUrl {
            dbname: Some(encode(name)),
            ..self.clone()
        }
    }

    /// A server on the local socket in `socket_dir`, without password.
    pub fn local(socket_dir: &str, port: u16, user: &str, dbname: &str) -> PgUrl {
        PgUrl {
            scheme: "postgresql".into(),
            user: Some(encode(user)),
            password: None,
            hosts: format!("{}:{port}", encode(socket_dir)),
            dbname: Some(encode(dbname)),
            params: Vec::new(),
        }
    }
}

impl fmt::Display for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgUrl({})", self.masked())
    }
}

/// The port of `host[:port]` (IPv6 literals in brackets).
fn port_of(host: &str) -> Option<&str> {
    let after = match host.rfind(']') {
        Some(i) => &host[i + 1..],
        None => host,
    };
    after.rsplit_once(':').map(|(_, p)| p)
}

fn mask_pair(pair: &str) -> String {
    if pair.starts_with("password") {
        "password=***".into()
    } else {
        pair.into()
    }
}

/// Percent-decodes `s` (UTF-8).
fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "invalid percent-encoding".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 after percent-decoding".to_string())
}

/// Percent-encodes everything but unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_masked_stripped_and_decoded() {
        let u = PgUrl::parse("postgresql://app:p%40ss%3Aw@db.example:5433/shop?sslmode=require")
            .unwrap();
        assert_eq!(
            u.masked(),
            "postgresql://app:***@db.example:5433/shop?sslmode=require"
        );
        assert_eq!(
            u.conninfo(),
            "postgresql://app@db.example:5433/shop?sslmode=require"
        );
        assert_eq!(u.password().as_deref(), Some("p@ss:w"));
        assert_eq!(u.dbname().as_deref(), Some("shop"));
        assert_eq!(u.user().as_deref(), Some("app"));
        assert!(!format!("{u:?}").contains("p%40ss"));
        assert_eq!(u.secrets(), ["p%40ss%3Aw", "p@ss:w"]);
    }

    #[test]
    fn password_in_the_query_is_masked_too() {
        let u = PgUrl::parse("postgres://app@h/db?password=hunter2&sslmode=disable").unwrap();
        assert_eq!(u.conninfo(), "postgres://app@h/db?sslmode=disable");
        assert_eq!(u.masked(), "postgres://app:***@h/db?sslmode=disable");
        assert_eq!(u.password().as_deref(), Some("hunter2"));
    }

    #[test]
    fn retargets_database_and_host() {
        let u = PgUrl::parse("postgresql://app:pw@h:5432/shop").unwrap();
        assert_eq!(
            u.with_dbname("new db").conninfo(),
            "postgresql://app@h:5432/new%20db"
        );
        assert_eq!(
            PgUrl::local("/tmp/x", 6000, "postgres", "shop").conninfo(),
            "postgresql://postgres@%2Ftmp%2Fx:6000/shop"
        );
        let bare = PgUrl::parse("postgresql://h").unwrap();
        assert_eq!(bare.dbname(), None);
        assert_eq!(bare.conninfo(), "postgresql://h");
    }

    #[test]
    fn rejects_what_is_not_a_url_without_echoing_secrets() {
        assert!(PgUrl::parse("mysql://u@h/db").is_err());
        assert!(PgUrl::parse("/var/lib/db").is_err());
        assert!(PgUrl::parse("postgresql://u@h:99999/db").is_err());
        let e = PgUrl::parse("postgresql://u:s3cr%zz@h/db").unwrap_err();
        assert!(!e.contains("s3cr"), "{e}");
    }
}
