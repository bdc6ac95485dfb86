//! Where Redis is: one server, a Redis Cluster, or a master followed through Sentinel, read from
//! one URL (`--redis-url`).
//!
//! | form | topology |
//! |---|---|
//! | `redis://[[USER]:PASSWORD@]HOST:PORT[/DB]`, `rediss://…` (TLS) | one Redis, as redis-rs reads it |
//! | `redis+cluster://[[USER]:PASSWORD@]HOST:PORT,HOST:PORT,…`, `rediss+cluster://…` | seed nodes of a Redis Cluster |
//! | `redis+sentinel://[[USER]:PASSWORD@]HOST:PORT,HOST:PORT,…/MASTER` | the master `MASTER`, found through these sentinels |
//!
//! redis-rs has no scheme for the last two, so they are read here, strictly: every node is
//! `HOST:PORT` (the port is required, `[v6]:PORT` for IPv6), a cluster URL has no path (a cluster
//! has only database 0), a sentinel URL names exactly one master, and nothing else is accepted.
//! The credentials apply to every node (to the master, for Sentinel). Nothing here connects, and
//! nothing here knows about HTTP: the server turns [`TargetError`] into its start-up message.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// The accepted forms, shown whenever a URL is refused.
pub const REDIS_URL_FORMS: &str = "redis://[:PASSWORD@]HOST:PORT[/DB] (or rediss:// for TLS), \
     redis+cluster://[:PASSWORD@]HOST:PORT,HOST:PORT,... (or rediss+cluster://), \
     redis+sentinel://[:PASSWORD@]HOST:PORT,HOST:PORT,.../MASTER-NAME";

/// A Redis deployment, parsed from a URL by [`RedisTarget::parse`].
#[derive(Debug, Clone)]
pub enum RedisTarget {
    /// One Redis server. The URL is kept whole for redis-rs, which reads it.
    Standalone(StandaloneTarget),
    /// A Redis Cluster, found from its seed nodes.
    Cluster(ClusterTarget),
    /// A master (and its failovers) found through Sentinel.
    Sentinel(SentinelTarget),
}

/// One Redis server.
#[derive(Debug, Clone)]
pub struct StandaloneTarget {
    /// The `redis://` or `rediss://` URL, which may hold a password.
    pub url: SecretString,
}

/// A Redis Cluster's seed nodes: any reachable one tells the client the rest.
#[derive(Debug, Clone)]
pub struct ClusterTarget {
    /// The seed nodes, in the order given.
    pub seeds: Vec<NodeAddress>,
    /// `rediss+cluster://`: TLS to every node.
    pub tls: bool,
    /// Credentials for every node.
    pub credentials: Credentials,
}

/// Sentinels and the name of the master they watch.
#[derive(Debug, Clone)]
pub struct SentinelTarget {
    /// The sentinels, in the order given.
    pub sentinels: Vec<NodeAddress>,
    /// The master's name in the sentinels' configuration.
    pub master_name: String,
    /// `rediss+sentinel://`: TLS to the master.
    pub tls: bool,
    /// Credentials for the master.
    pub credentials: Credentials,
}

/// `HOST:PORT` of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddress {
    /// A name, an IPv4 address, or an IPv6 address without its brackets.
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

/// User name and password from a URL's user-info part. The password is a secret: it is never
/// displayed, and `Debug` redacts it.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// `USER` of `USER:PASSWORD@`, for Redis ACL users.
    pub username: Option<String>,
    /// `PASSWORD` of `[USER]:PASSWORD@`.
    pub password: Option<SecretString>,
}

/// Why a Redis URL was refused. Each message ends with the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}; expected {REDIS_URL_FORMS}")]
pub struct TargetError {
    reason: String,
}

impl TargetError {
    fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

impl RedisTarget {
    /// Reads one of the accepted forms (see the module docs); anything else is refused.
    pub fn parse(text: &str) -> Result<Self, TargetError> {
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(TargetError::new("the URL has no scheme"));
        };
        match scheme {
            "redis" | "rediss" => {
                if authority(rest).0.is_empty() {
                    return Err(TargetError::new("the URL names no host"));
                }
                Ok(Self::Standalone(StandaloneTarget {
                    url: SecretString::from(text.to_owned()),
                }))
            }
            "redis+cluster" | "rediss+cluster" => {
                let (authority, path) = authority(rest);
                if !path.is_empty() && path != "/" {
                    return Err(TargetError::new(
                        "a cluster URL has no database or path (a Redis Cluster has only database 0)",
                    ));
                }
                let (credentials, nodes) = split_credentials(authority);
                Ok(Self::Cluster(ClusterTarget {
                    seeds: parse_nodes(nodes)?,
                    tls: scheme == "rediss+cluster",
                    credentials,
                }))
            }
            "redis+sentinel" | "rediss+sentinel" => {
                let (authority, path) = authority(rest);
                let master_name = path.strip_prefix('/').unwrap_or_default();
                if master_name.is_empty() || master_name.contains(['/', '?', '#']) {
                    return Err(TargetError::new(
                        "a sentinel URL ends with /MASTER-NAME, the name the sentinels know the master by",
                    ));
                }
                let (credentials, nodes) = split_credentials(authority);
                Ok(Self::Sentinel(SentinelTarget {
                    sentinels: parse_nodes(nodes)?,
                    master_name: master_name.to_owned(),
                    tls: scheme == "rediss+sentinel",
                    credentials,
                }))
            }
            other => Err(TargetError::new(format!(
                "unknown scheme {:?}",
                other.chars().take(32).collect::<String>()
            ))),
        }
    }

    /// The topology's name, for logs and `/readyz`: `standalone`, `cluster` or `sentinel`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Standalone(_) => "standalone",
            Self::Cluster(_) => "cluster",
            Self::Sentinel(_) => "sentinel",
        }
    }
}

impl Credentials {
    /// `USER:PASSWORD@` (or `:PASSWORD@`, `USER@`, nothing) for a node URL.
    fn user_info(&self, redacted: bool) -> String {
        let user = self.username.as_deref().unwrap_or_default();
        match &self.password {
            Some(_) if redacted => format!("{user}:***@"),
            Some(password) => format!("{user}:{}@", password.expose_secret()),
            None if user.is_empty() => String::new(),
            None => format!("{user}@"),
        }
    }
}

impl NodeAddress {
    /// `redis://[credentials@]HOST:PORT` (or `rediss://`) for this node: what redis-rs reads.
    pub fn url(&self, tls: bool, credentials: &Credentials) -> SecretString {
        SecretString::from(self.url_text(tls, credentials, false))
    }

    fn url_text(&self, tls: bool, credentials: &Credentials, redacted: bool) -> String {
        let scheme = if tls { "rediss" } else { "redis" };
        format!("{scheme}://{}{self}", credentials.user_info(redacted))
    }
}

impl fmt::Display for NodeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The URL with any password masked: safe for logs.
impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn nodes(list: &[NodeAddress]) -> String {
            list.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        }
        match self {
            Self::Standalone(target) => {
                let url = target.url.expose_secret();
                let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
                let (authority, path) = authority(rest);
                let (credentials, host) = split_credentials(authority);
                write!(f, "{scheme}://{}{host}{path}", credentials.user_info(true))
            }
            Self::Cluster(target) => write!(
                f,
                "{}://{}{}",
                if target.tls {
                    "rediss+cluster"
                } else {
                    "redis+cluster"
                },
                target.credentials.user_info(true),
                nodes(&target.seeds)
            ),
            Self::Sentinel(target) => write!(
                f,
                "{}://{}{}/{}",
                if target.tls {
                    "rediss+sentinel"
                } else {
                    "redis+sentinel"
                },
                target.credentials.user_info(true),
                nodes(&target.sentinels),
                target.master_name
            ),
        }
    }
}

impl ClusterTarget {
    /// The seeds as redis-rs node URLs (with the credentials).
    pub fn seed_urls(&self) -> Vec<String> {
        self.seeds
            .iter()
            .map(|seed| seed.url_text(self.tls, &self.credentials, false))
            .collect()
    }
}

/// Splits `AUTHORITY/PATH` after the scheme.
fn authority(rest: &str) -> (&str, &str) {
    // The user-info may hold a `/` in a password: the path starts after the last `@`.
    let host_start = rest.rfind('@').map_or(0, |at| at + 1);
    let path_start = rest[host_start..]
        .find(['/', '?'])
        .map_or(rest.len(), |i| host_start + i);
    rest.split_at(path_start)
}

/// Splits `[USER][:PASSWORD]@NODES` into its credentials and `NODES`.
fn split_credentials(authority: &str) -> (Credentials, &str) {
    let Some((user_info, nodes)) = authority.rsplit_once('@') else {
        return (Credentials::default(), authority);
    };
    let (user, password) = match user_info.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (user_info, None),
    };
    let credentials = Credentials {
        username: (!user.is_empty()).then(|| user.to_owned()),
        password: password.map(|p| SecretString::from(p.to_owned())),
    };
    (credentials, nodes)
}

/// `HOST:PORT,HOST:PORT,…`: at least one node, each with a port.
fn parse_nodes(list: &str) -> Result<Vec<NodeAddress>, TargetError> {
    if list.is_empty() {
        return Err(TargetError::new("the URL names no node"));
    }
    list.split(',').map(parse_node).collect()
}

fn parse_node(text: &str) -> Result<NodeAddress, TargetError> {
    let bad = || {
        TargetError::new(format!(
            "{:?} is not HOST:PORT",
            text.chars().take(64).collect::<String>()
        ))
    };
    let (host, port) = match text.strip_prefix('[') {
        // `[v6]:PORT`
        Some(rest) => {
            let (host, port) = rest.split_once("]:").ok_or_else(bad)?;
            (host, port)
        }
        None => text.rsplit_once(':').ok_or_else(bad)?,
    };
    let valid_host = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
    let port = port.parse::<u16>().ok().filter(|&p| p != 0);
    match (valid_host, port) {
        (true, Some(port)) => Ok(NodeAddress {
            host: host.to_owned(),
            port,
        }),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, port: u16) -> NodeAddress {
        NodeAddress {
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn a_plain_url_is_one_redis_kept_whole_for_redis_rs() {
        for url in [
            "redis://127.0.0.1:6379",
            "redis://:pw@127.0.0.1:6379/2",
            "rediss://user:pw@cache.example:6380/0",
        ] {
            let RedisTarget::Standalone(target) = RedisTarget::parse(url).unwrap() else {
                panic!("{url} is a standalone Redis");
            };
            assert_eq!(target.url.expose_secret(), url);
        }
    }

    #[test]
    fn a_cluster_url_lists_its_seeds_and_credentials() {
        let RedisTarget::Cluster(target) =
            RedisTarget::parse("redis+cluster://:s3cret@10.0.0.1:7000,node-b:7001,[::1]:7002")
                .unwrap()
        else {
            panic!("a cluster");
        };
        assert_eq!(
            target.seeds,
            [
                node("10.0.0.1", 7000),
                node("node-b", 7001),
                node("::1", 7002)
            ]
        );
        assert!(!target.tls);
        assert_eq!(
            target.seed_urls(),
            [
                "redis://:s3cret@10.0.0.1:7000",
                "redis://:s3cret@node-b:7001",
                "redis://:s3cret@[::1]:7002"
            ]
        );
        let RedisTarget::Cluster(tls) = RedisTarget::parse("rediss+cluster://h:1/").unwrap() else {
            panic!("a cluster");
        };
        assert!(tls.tls);
        assert_eq!(tls.seed_urls(), ["rediss://h:1"]);
    }

    #[test]
    fn a_sentinel_url_names_its_sentinels_and_one_master() {
        let RedisTarget::Sentinel(target) =
            RedisTarget::parse("redis+sentinel://app:pw@s1:26379,s2:26380/mymaster").unwrap()
        else {
            panic!("sentinel");
        };
        assert_eq!(target.sentinels, [node("s1", 26379), node("s2", 26380)]);
        assert_eq!(target.master_name, "mymaster");
        assert_eq!(target.credentials.username.as_deref(), Some("app"));
        assert_eq!(
            target
                .credentials
                .password
                .as_ref()
                .map(|p| p.expose_secret()),
            Some("pw")
        );
    }

    #[test]
    fn anything_else_is_refused_with_the_accepted_forms() {
        for bad in [
            "",
            "127.0.0.1:6379",
            "http://x:1",
            "redis+cluster://",
            "redis+cluster://h",
            "redis+cluster://h:0",
            "redis+cluster://h:99999",
            "redis+cluster://h:1,,h:2",
            "redis+cluster://h:1/3",
            "redis+cluster://h:1?x=y",
            "redis+cluster://bad host:1",
            "redis+sentinel://s:26379",
            "redis+sentinel://s:26379/",
            "redis+sentinel://s:26379/a/b",
            "redis+sentinel:///m",
            "redis://",
            "redis+unix://x",
        ] {
            let err = RedisTarget::parse(bad).expect_err(bad).to_string();
            assert!(err.contains("redis+cluster://"), "{bad}: {err}");
            assert!(err.contains("redis+sentinel://"), "{bad}: {err}");
            assert!(err.contains("rediss://"), "{bad}: {err}");
        }
    }

    #[test]
    fn passwords_never_show_in_display_or_debug() {
        for url in [
            "redis://:hunter2@h:1/0",
            "redis+cluster://u:hunter2@h:1,h:2",
            "redis+sentinel://:hunter2@s:26379/m",
        ] {
            let target = RedisTarget::parse(url).unwrap();
            let shown = format!("{target} {target:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
        assert_eq!(
            RedisTarget::parse("redis+cluster://u:hunter2@h:1,h:2")
                .unwrap()
                .to_string(),
            "redis+cluster://u:***@h:1,h:2"
        );
        assert_eq!(
            RedisTarget::parse("redis+sentinel://s:1,t:2/m")
                .unwrap()
                .to_string(),
            "redis+sentinel://s:1,t:2/m"
        );
        assert_eq!(
            RedisTarget::parse("redis://:pw@h:1/3").unwrap().to_string(),
            "redis://:***@h:1/3"
        );
    }
}
