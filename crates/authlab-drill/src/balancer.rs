//! HAProxy in front of the instances: its configuration, the process, and what it thinks of each
//! server (through its admin socket).
//!
//! # The configuration, line by line
//! - `/session/...` (and any request carrying the session cookie) goes to backend `sessions`:
//!   **cookie affinity**. A session lives in one instance's memory, so the balancer must send the
//!   browser back to the instance that made it: `cookie SRVID insert indirect nocache` makes
//!   HAProxy add its own `SRVID` cookie naming the server to the first answer (`indirect`: the
//!   instance never sees it; `nocache`: no shared cache may store an answer that carries it),
//!   `attr "SameSite=Lax"` because HAProxy 2.6 has no `samesite` keyword. `option redispatch`:
//!   when that server is down, the request goes to another one instead of failing, where the
//!   session does not exist: the user must log in again (the cost of stickiness).
//! - Everything else (`/redis`, `/jwt`, `/users`, ...) goes to backend `tokens`: **round robin**,
//!   since a Redis token or a JWT is valid on every instance.
//! - Both check every server with `GET /livez` every 500 ms (down after 2 failures, up after 2
//!   successes). Not `/readyz`: that answers 503 on every instance at once when Redis is down,
//!   and the balancer would then have no server left for sessions or stateless JWT either.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::DrillError;
use crate::procs::{Process, locate};

/// The session cookie's name (`--cookie-secure` makes it `__Host-sid`; the drill does not set it).
pub const SESSION_COOKIE: &str = "sid";
/// The affinity cookie HAProxy inserts.
pub const AFFINITY_COOKIE: &str = "SRVID";

/// One server behind the balancer: its name (also the `SRVID` value) and address.
#[derive(Debug, Clone)]
pub struct Server {
    /// `a1`, `a2`, ...
    pub name: String,
    /// `127.0.0.1:27120`.
    pub address: String,
}

/// The health check the drill uses unless `--balancer-check` says otherwise.
pub const DEFAULT_CHECK: &str = "/livez";

/// The HAProxy configuration for `servers`, listening on `bind`, checking each server with
/// `GET check` ([`DEFAULT_CHECK`]). `admin_socket`: where the admin socket goes (none for the
/// checked-in compose file).
pub fn config(bind: &str, servers: &[Server], admin_socket: Option<&Path>, check: &str) -> String {
    let mut text = String::from("global\n    maxconn 4096\n");
    if let Some(socket) = admin_socket {
        text += &format!(
            "    stats socket {} mode 600 level admin\n",
            socket.display()
        );
    }
    text += "\
defaults
    mode http
    option http-keep-alive
    timeout connect 1s
    timeout client 30s
    timeout server 10s
    timeout check 2s
    # A server that is down gets no request, even one that carries its affinity cookie.
    option redispatch
    retries 1

frontend authlab
";
    text += &format!("    bind {bind}\n");
    text += &format!(
        "    acl session_path path_beg /session/\n    acl session_cookie req.cook({SESSION_COOKIE}) -m found\n"
    );
    text += "    use_backend sessions if session_path || session_cookie\n";
    text += "    default_backend tokens\n\n";
    text += "# Sessions live in one instance's memory: send each browser back to the instance that made\n";
    text += "# its session, with a cookie of the balancer's own.\n";
    text += "backend sessions\n    balance roundrobin\n";
    text += &format!(
        "    cookie {AFFINITY_COOKIE} insert indirect nocache httponly attr \"SameSite=Lax\"\n"
    );
    text += &format!("    option httpchk GET {check}\n    http-check expect status 200\n");
    for server in servers {
        text += &format!(
            "    server {name} {address} check inter 500 fall 2 rise 2 cookie {name}\n",
            name = server.name,
            address = server.address
        );
    }
    text += "\n# Redis tokens and JWTs are valid on every instance: plain round robin.\n";
    text += "backend tokens\n    balance roundrobin\n";
    text += &format!("    option httpchk GET {check}\n    http-check expect status 200\n");
    for server in servers {
        text += &format!(
            "    server {name} {address} check inter 500 fall 2 rise 2\n",
            name = server.name,
            address = server.address
        );
    }
    text
}

/// A running HAProxy.
pub struct Balancer {
    /// The process.
    pub process: Process,
    /// Its listening port.
    pub port: u16,
    /// Its admin socket.
    pub socket: PathBuf,
}

impl Balancer {
    /// Writes `haproxy.cfg` to `dir`, starts HAProxy (health checks on `GET check`) and waits
    /// for its port.
    pub fn start(
        port: u16,
        servers: &[Server],
        dir: &Path,
        check: &str,
    ) -> Result<Self, DrillError> {
        let socket = dir.join("haproxy.sock");
        let text = config(&format!("127.0.0.1:{port}"), servers, Some(&socket), check);
        Self::start_config(port, dir, &text)
    }

    /// Writes `text` as `haproxy.cfg` to `dir`, starts HAProxy and waits for `port`. The
    /// configuration must put its admin socket at `dir/haproxy.sock` (as [`config`] does when
    /// given it): for a configuration [`config`] wrote and the caller edited.
    pub fn start_config(port: u16, dir: &Path, text: &str) -> Result<Self, DrillError> {
        let socket = dir.join("haproxy.sock");
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(&cfg, text).map_err(|source| DrillError::Io {
            path: cfg.clone(),
            source,
        })?;
        let mut command = Command::new(locate("haproxy"));
        // -db: stay in the foreground, so the guard's pid is HAProxy's own.
        command.arg("-db").arg("-f").arg(&cfg);
        let mut process = Process::spawn("haproxy".into(), command, dir.join("haproxy.log"))?;
        process.wait_for_port(port, Duration::from_secs(10))?;
        Ok(Self {
            process,
            port,
            socket,
        })
    }

    /// What HAProxy thinks of each server of backend `tokens` now: `(name, status)`, status
    /// being `UP`, `DOWN`, `UP 1/2`, ... Empty if the socket does not answer.
    pub fn server_states(&self) -> Vec<(String, String)> {
        let Ok(mut stream) = UnixStream::connect(&self.socket) else {
            return Vec::new();
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        if stream.write_all(b"show stat\n").is_err() {
            return Vec::new();
        }
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        parse_stat(&text, "tokens")
    }

    /// The HTTP requests frontend `name` has received so far (`req_tot` of `show stat`);
    /// `None` if the socket does not answer or there is no such frontend.
    pub fn frontend_requests(&self, name: &str) -> Option<u64> {
        let mut stream = UnixStream::connect(&self.socket).ok()?;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        stream.write_all(b"show stat\n").ok()?;
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        parse_frontend_requests(&text, name)
    }
}

/// `req_tot` of frontend `name` in `show stat` CSV.
fn parse_frontend_requests(csv: &str, name: &str) -> Option<u64> {
    let mut lines = csv.lines();
    let columns: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
    let column = |wanted: &str| columns.iter().position(|c| *c == wanted);
    let (px, sv, requests) = (column("pxname")?, column("svname")?, column("req_tot")?);
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|f| f.get(px) == Some(&name) && f.get(sv) == Some(&"FRONTEND"))
        .and_then(|f| f.get(requests)?.parse().ok())
}

/// The `(svname, status)` of each server of `backend` in `show stat` CSV.
fn parse_stat(csv: &str, backend: &str) -> Vec<(String, String)> {
    let mut lines = csv.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let columns: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
    let column = |name: &str| columns.iter().position(|c| *c == name);
    let (Some(px), Some(sv), Some(status)) = (column("pxname"), column("svname"), column("status"))
    else {
        return Vec::new();
    };
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| {
            f.get(px) == Some(&backend) && !matches!(f.get(sv), Some(&"FRONTEND" | &"BACKEND"))
        })
        .filter_map(|f| Some((f.get(sv)?.to_string(), f.get(status)?.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frontends_request_count_is_read_from_show_stat() {
        let csv = "# pxname,svname,qcur,req_tot,status\n\
                   jwks-v1,FRONTEND,,7,OPEN\n\
                   tokens,i1,0,,UP\n\
                   jwks-v2,FRONTEND,,12,OPEN\n";
        assert_eq!(parse_frontend_requests(csv, "jwks-v1"), Some(7));
        assert_eq!(parse_frontend_requests(csv, "jwks-v2"), Some(12));
        assert_eq!(parse_frontend_requests(csv, "tokens"), None);
        assert_eq!(parse_frontend_requests("", "jwks-v1"), None);
    }

    #[test]
    fn sessions_are_sticky_tokens_round_robin_and_both_check_livez() {
        let servers = [
            Server {
                name: "a1".into(),
                address: "127.0.0.1:1".into(),
            },
            Server {
                name: "a2".into(),
                address: "127.0.0.1:2".into(),
            },
        ];
        let text = config("127.0.0.1:80", &servers, None, DEFAULT_CHECK);
        let sessions = text.split("\nbackend sessions").nth(1).unwrap_or_default();
        let sessions = sessions
            .split("\nbackend tokens")
            .next()
            .unwrap_or_default();
        assert!(sessions.contains("cookie SRVID insert indirect nocache"));
        assert!(sessions.contains("attr \"SameSite=Lax\""));
        assert!(sessions.contains("server a2 127.0.0.1:2 check inter 500 fall 2 rise 2 cookie a2"));
        let tokens = text.split("\nbackend tokens").nth(1).unwrap_or_default();
        assert!(!tokens.contains("cookie"));
        assert!(tokens.contains("balance roundrobin"));
        assert_eq!(text.matches("option httpchk GET /livez").count(), 2);
        assert!(text.contains("option redispatch"));
        assert!(!text.contains("readyz"));
    }

    #[test]
    fn the_admin_socket_status_is_read_per_server() {
        let csv = "# pxname,svname,qcur,status\ntokens,FRONTEND,0,OPEN\ntokens,a1,0,UP\ntokens,a2,0,DOWN\nsessions,a1,0,UP\n";
        assert_eq!(
            parse_stat(csv, "tokens"),
            vec![("a1".into(), "UP".into()), ("a2".into(), "DOWN".into())]
        );
    }

    #[test]
    fn the_compose_files_haproxy_cfg_has_every_rule_the_drill_generates() {
        let checked_in = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/haproxy.cfg"),
        )
        .unwrap_or_default();
        let checked_in: Vec<&str> = checked_in.lines().map(str::trim).collect();
        let generated = config("127.0.0.1:80", &[], None, DEFAULT_CHECK);
        for line in generated.lines().map(str::trim) {
            // Addresses differ (ports here, service names there); every rule must be the same.
            if line.is_empty()
                || line.starts_with('#')
                || line.starts_with("bind ")
                || line.starts_with("server ")
            {
                continue;
            }
            assert!(
                checked_in.contains(&line),
                "deploy/haproxy.cfg lacks `{line}`"
            );
        }
    }
}
