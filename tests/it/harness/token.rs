//! A token service for a registry in `auth: token` mode (docker's token authentication): on
//! `GET /token?service=…&scope=…` it checks HTTP basic credentials, records the request, and
//! answers a JWT it signs itself. The registry trusts the signer through `rootcertbundle`.
//!
//! What distribution 2.8 requires of a token: `iss` and `aud` equal to its configured issuer
//! and service (`aud` a plain string), `exp`/`nbf` valid give or take its 60 s leeway, an
//! `access` claim covering what the request needs, and a header that names the signing key:
//! here `x5c`, the signing certificate (standard base64 DER), which must verify against the
//! bundle. A self-signed certificate that is itself in the bundle does. (`kid` holding the
//! libtrust key ID of a bundle certificate's key works too; a header naming no key, URL-safe
//! base64 in `x5c`, or `aud` as an array are refused.)
//!
//! One request per connection (`Connection: close`), like the fault proxy.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The registry's `service` (the tokens' audience).
pub const TOKEN_SERVICE: &str = "haul-test-registry";
/// The tokens' `iss`, which the registry is configured to trust.
pub const TOKEN_ISSUER: &str = "haul-test-token-service";
/// How long past `exp` distribution still accepts a token (clock-skew leeway).
const REGISTRY_LEEWAY_SECS: i64 = 60;

/// One `type:name:actions` grant, e.g. `repository:library/app:pull,push`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Access {
    pub fn repository(name: &str, actions: &[&str]) -> Access {
        Access {
            kind: "repository".to_string(),
            name: name.to_string(),
            actions: actions
                .iter()
                .map(std::string::ToString::to_string)
                .collect(),
        }
    }

    /// Parses a `scope` parameter. The name may hold `:` (a registry host with a port), so
    /// the type is before the first `:` and the actions after the last.
    pub fn parse(scope: &str) -> Option<Access> {
        let (kind, rest) = scope.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        Some(Access {
            kind: kind.to_string(),
            name: name.to_string(),
            actions: actions.split(',').map(str::to_string).collect(),
        })
    }
}

/// A signing key and its self-signed certificate.
pub struct TokenIssuer {
    key: jsonwebtoken::EncodingKey,
    cert_der: Vec<u8>,
    next_id: AtomicU64,
}

impl TokenIssuer {
    pub fn new() -> TokenIssuer {
        // P-256: ES256, which distribution verifies through libtrust.
        let certified = rcgen::generate_simple_self_signed(vec![TOKEN_ISSUER.to_string()])
            .expect("generate the token signing certificate");
        TokenIssuer {
            key: jsonwebtoken::EncodingKey::from_ec_der(&certified.signing_key.serialize_der()),
            cert_der: certified.cert.der().to_vec(),
            next_id: AtomicU64::new(0),
        }
    }

    /// The certificate as PEM, for the registry's `rootcertbundle`.
    pub fn cert_pem(&self) -> String {
        let body = STANDARD.encode(&self.cert_der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    }

    /// A token for `subject` granting `access`, which the registry accepts for `lifetime`
    /// from now (`exp` is set back by the registry's leeway, so short lifetimes are real).
    pub fn mint(&self, subject: &str, access: &[Access], lifetime: Duration) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let access: Vec<serde_json::Value> = access
            .iter()
            .map(|a| serde_json::json!({"type": a.kind, "name": a.name, "actions": a.actions}))
            .collect();
        let claims = serde_json::json!({
            "iss": TOKEN_ISSUER,
            "sub": subject,
            "aud": TOKEN_SERVICE,
            "exp": now + lifetime.as_secs() as i64 - REGISTRY_LEEWAY_SECS,
            "nbf": now,
            "iat": now,
            "jti": format!("haul-test-{}", self.next_id.fetch_add(1, Ordering::SeqCst)),
            "access": access,
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        // The key is named by its certificate: distribution checks it against the bundle.
        header.x5c = Some(vec![STANDARD.encode(&self.cert_der)]);
        jsonwebtoken::encode(&header, &claims, &self.key).expect("sign a token")
    }
}

impl Default for TokenIssuer {
    fn default() -> TokenIssuer {
        TokenIssuer::new()
    }
}

/// A request the token service answered.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub service: Option<String>,
    pub scopes: Vec<String>,
    /// The basic-auth user name, when the request carried credentials.
    pub user: Option<String>,
    /// 200 with a token, 401 for wrong credentials, 404 for another path.
    pub status: u16,
}

impl TokenRequest {
    pub fn had_credentials(&self) -> bool {
        self.user.is_some()
    }
}

struct State {
    requests: Vec<TokenRequest>,
    lifetime: Duration,
}

/// A token service on its own 127.0.0.1 port for one user; stops accepting on drop.
pub struct TokenServer {
    port: u16,
    issuer: Arc<TokenIssuer>,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl TokenServer {
    /// Grants `user` (with `password`) whatever scope it asks for. A request without
    /// credentials gets a token that grants nothing, as Docker Hub answers anonymous pulls
    /// of a private repository; wrong credentials get 401.
    pub fn start(user: &str, password: &str) -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the token service");
        let port = listener.local_addr().unwrap().port();
        let issuer = Arc::new(TokenIssuer::new());
        let state = Arc::new(Mutex::new(State {
            requests: Vec::new(),
            lifetime: Duration::from_secs(300),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (issuer, state, stop) = (issuer.clone(), state.clone(), stop.clone());
            let user = (user.to_string(), password.to_string());
            thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let (issuer, state, user) = (issuer.clone(), state.clone(), user.clone());
                    thread::spawn(move || {
                        let _ = serve(client, &issuer, &state, &user);
                    });
                }
            });
        }
        TokenServer {
            port,
            issuer,
            state,
            stop,
        }
    }

    /// The realm the registry names in its challenges.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The signer, shared with the registry harness (which mints its own push tokens).
    pub fn issuer(&self) -> Arc<TokenIssuer> {
        self.issuer.clone()
    }

    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn clear(&self) {
        self.state.lock().unwrap().requests.clear();
    }

    /// How long the tokens handed out from now on are accepted by the registry (300 s
    /// unless set), and what `expires_in` says.
    pub fn set_lifetime(&self, lifetime: Duration) {
        self.state.lock().unwrap().lifetime = lifetime;
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(
    client: TcpStream,
    issuer: &TokenIssuer,
    state: &Mutex<State>,
    (user, password): &(String, String),
) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_string());
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("/");
    let url = reqwest::Url::parse(&format!("http://token-service{target}"))
        .unwrap_or_else(|_| reqwest::Url::parse("http://token-service/").unwrap());
    let query = |key: &str| -> Vec<String> {
        url.query_pairs()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
            .collect()
    };
    // docker sends one `scope` per resource; a scope may also hold several, space-separated.
    let scopes: Vec<String> = query("scope")
        .iter()
        .flat_map(|s| s.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();
    let credentials = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|raw| {
            raw.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        });
    let mut record = TokenRequest {
        service: query("service").into_iter().next(),
        scopes: scopes.clone(),
        user: credentials.as_ref().map(|(u, _)| u.clone()),
        status: 0,
    };
    let lifetime = state.lock().unwrap().lifetime;
    // An Authorization header that is not readable Basic credentials counts as wrong.
    let wrong = match &credentials {
        Some((u, p)) => (u, p) != (user, password),
        None => authorization.is_some(),
    };
    let (status, body) = if url.path() != "/token" {
        (404, serde_json::json!({"errors": [{"code": "NOT_FOUND"}]}))
    } else if wrong {
        let error =
            serde_json::json!({"code": "UNAUTHORIZED", "message": "wrong user name or password"});
        (401, serde_json::json!({ "errors": [error] }))
    } else {
        // The user gets every scope asked; anonymous requests get a token for nothing.
        let (subject, granted) = match &credentials {
            Some((u, _)) => (
                u.clone(),
                scopes.iter().filter_map(|s| Access::parse(s)).collect(),
            ),
            None => (String::new(), Vec::new()),
        };
        let token = issuer.mint(&subject, &granted, lifetime);
        let answer = serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": lifetime.as_secs(),
        });
        (200, answer)
    };
    record.status = status;
    // Recorded before answering: the client acts on the answer at once.
    state.lock().unwrap().requests.push(record);
    let body = serde_json::to_vec(&body).unwrap();
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    let mut client = client;
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status == 401 {
        head.push_str("WWW-Authenticate: Basic realm=\"haul-test-token-service\"\r\n");
    }
    head.push_str("\r\n");
    client.write_all(head.as_bytes())?;
    client.write_all(&body)?;
    client.flush()
}
