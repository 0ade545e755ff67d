//! The OTLP flags parsed, without I/O: the endpoint URL (http or https, a
//! host, a port, the path requests are POSTed to), the extra request
//! headers (`KEY=VALUE`) and the body's compression. Each error says what
//! is wrong with the value.

use std::{fmt, str::FromStr};

use hyper::{
    Uri,
    header::{HeaderName, HeaderValue},
};

/// How request bodies are encoded (OTLP/HTTP names gzip; the
/// OpenTelemetry SDKs' default is none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

impl Compression {
    /// The Content-Encoding header's value, if any.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::Gzip => Some("gzip"),
        }
    }

    /// `body` encoded so (gzip into memory fails only if memory does).
    pub fn encode(self, body: Vec<u8>) -> std::io::Result<Vec<u8>> {
        match self {
            Self::None => Ok(body),
            Self::Gzip => {
                use std::io::Write as _;
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                encoder.write_all(&body)?;
                encoder.finish()
            }
        }
    }
}

/// The path a URL without one is given (OTLP/HTTP's metrics path).
pub const DEFAULT_PATH: &str = "/v1/metrics";

/// Where the agent pushes: `http://host:4318/v1/metrics`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// As given on the command line.
    pub url: String,
    pub tls: bool,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Path and query POSTed to.
    pub path: String,
    /// The Host header: the URL's authority.
    pub authority: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error("not a URL ({0})")]
    NotAUrl(String),
    #[error("the scheme must be http or https, not {0:?}")]
    Scheme(String),
    #[error("no scheme: write http://{0} or https://{0}")]
    NoScheme(String),
    #[error("no host")]
    NoHost,
    #[error("credentials in the URL are not sent; use --otlp-header Authorization=...")]
    Credentials,
    #[error("{0:?} is not a port (1 to 65535)")]
    Port(String),
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let uri: Uri = text
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| EndpointError::NotAUrl(e.to_string()))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(other) => return Err(EndpointError::Scheme(other.to_string())),
            None => return Err(EndpointError::NoScheme(text.to_string())),
        };
        let authority = uri.authority().ok_or(EndpointError::NoHost)?;
        if authority.as_str().contains('@') {
            return Err(EndpointError::Credentials);
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(EndpointError::NoHost);
        }
        // What follows the host: nothing, or `:PORT` (the URI parser
        // takes ports past 65535 and drops them).
        let port_text = authority
            .as_str()
            .strip_prefix(authority.host())
            .unwrap_or_default();
        let port = match port_text.strip_prefix(':') {
            None | Some("") => {
                if tls {
                    443
                } else {
                    80
                }
            }
            Some(digits) => digits
                .parse::<u16>()
                .map_err(|_| EndpointError::Port(digits.to_string()))?,
        };
        if port == 0 {
            return Err(EndpointError::Port("0".into()));
        }
        let path = match uri.path_and_query().map(|p| p.as_str()) {
            None | Some("" | "/") => DEFAULT_PATH.to_string(),
            Some(path) => path.to_string(),
        };
        Ok(Self {
            url: text.to_string(),
            tls,
            host: host.to_string(),
            port,
            path,
            authority: authority.as_str().to_string(),
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// Headers the agent sets itself (or that would break the framing).
const RESERVED: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "upgrade",
];

/// One `--otlp-header KEY=VALUE`. Its value is never printed (it is
/// often a credential).
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    pub name: HeaderName,
    pub value: HeaderValue,
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=<redacted>", self.name)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("expected KEY=VALUE")]
    NoEquals,
    #[error("{0:?} is not a valid header name")]
    Name(String),
    #[error("the value of {0} has characters a header cannot carry")]
    Value(String),
    #[error("{0} is set by the agent itself")]
    Reserved(String),
}

impl FromStr for Header {
    type Err = HeaderError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, value) = text.split_once('=').ok_or(HeaderError::NoEquals)?;
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HeaderError::Name(crate::format::escape_control(name)))?;
        if RESERVED.contains(&name.as_str()) {
            return Err(HeaderError::Reserved(name.to_string()));
        }
        let mut value =
            HeaderValue::from_str(value).map_err(|_| HeaderError::Value(name.to_string()))?;
        value.set_sensitive(true);
        Ok(Self { name, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_bodies_decode_to_the_same_bytes_and_none_is_unchanged() {
        use std::io::Read as _;
        let body: Vec<u8> = (0..10_000u32)
            .flat_map(|i| (i % 97).to_le_bytes())
            .collect();
        assert_eq!(Compression::None.encode(body.clone()).unwrap(), body);
        assert_eq!(Compression::None.content_encoding(), None);
        let encoded = Compression::Gzip.encode(body.clone()).unwrap();
        assert!(encoded.len() < body.len() / 4, "{} bytes", encoded.len());
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&encoded[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, body);
        assert_eq!(Compression::Gzip.content_encoding(), Some("gzip"));
    }

    #[test]
    fn endpoints_parse_with_defaults() {
        let e: Endpoint = "http://127.0.0.1:4318/v1/metrics".parse().unwrap();
        assert_eq!(
            (e.tls, e.host.as_str(), e.port, e.path.as_str()),
            (false, "127.0.0.1", 4318, "/v1/metrics")
        );
        assert_eq!(e.authority, "127.0.0.1:4318");
        let e: Endpoint = "https://collector.example".parse().unwrap();
        assert_eq!(
            (e.tls, e.host.as_str(), e.port, e.path.as_str()),
            (true, "collector.example", 443, DEFAULT_PATH)
        );
        let e: Endpoint = "http://[::1]:4318/otlp/v1/metrics?x=1".parse().unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("::1", 4318, "/otlp/v1/metrics?x=1")
        );
    }

    #[test]
    fn bad_endpoints_say_what_is_wrong() {
        let err = |s: &str| s.parse::<Endpoint>().unwrap_err();
        assert_eq!(err("ftp://h/x"), EndpointError::Scheme("ftp".into()));
        assert!(matches!(
            err("collector:4318"),
            EndpointError::Scheme(_) | EndpointError::NoScheme(_)
        ));
        assert_eq!(
            err("localhost"),
            EndpointError::NoScheme("localhost".into())
        );
        assert_eq!(err("http://u:p@h:1/"), EndpointError::Credentials);
        assert_eq!(err("http://h:0/"), EndpointError::Port("0".into()));
        assert_eq!(err("http://h:99999/"), EndpointError::Port("99999".into()));
        assert!(matches!(err("http:// /"), EndpointError::NotAUrl(_)));
        assert!(matches!(err(""), EndpointError::NotAUrl(_)));
    }

    #[test]
    fn headers_parse_and_hide_their_values() {
        let h: Header = "Authorization=Bearer s3cret".parse().unwrap();
        assert_eq!(h.name, "authorization");
        assert_eq!(h.value, "Bearer s3cret");
        assert!(h.value.is_sensitive());
        assert!(!format!("{h:?}").contains("s3cret"));
        let h: Header = "x-tenant=a=b".parse().unwrap();
        assert_eq!(h.value, "a=b");
        assert_eq!(
            "novalue".parse::<Header>().unwrap_err(),
            HeaderError::NoEquals
        );
        assert_eq!(
            "bad name=v".parse::<Header>().unwrap_err(),
            HeaderError::Name("bad name".into())
        );
        assert_eq!(
            "x-a=line\nbreak".parse::<Header>().unwrap_err(),
            HeaderError::Value("x-a".into())
        );
        assert_eq!(
            "Content-Type=text/plain".parse::<Header>().unwrap_err(),
            HeaderError::Reserved("content-type".into())
        );
    }
}
