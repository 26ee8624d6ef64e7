//! `nimbus routes|url|gateway-keys`: the HTTP gateway's configuration.
//!
//! Thin clients of `/v1/routes`, `/v1/functions/{name}/url` and
//! `/v1/gateway/keys`; the server validates (conflicts, JWT settings) and
//! answers with one-line reasons.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::ClientArgs;
use crate::client::Client;

#[derive(clap::Args)]
pub struct RoutesArgs {
    #[command(subcommand)]
    command: RoutesCommand,
    #[command(flatten)]
    client: ClientArgs,
}

/// Settings shared by routes and function URLs.
#[derive(clap::Args, Default)]
struct AccessFlags {
    /// none, function-key (x-functions-key / ?code=), api-key (x-api-key) or jwt.
    #[arg(long, default_value = "none", value_parser = ["none", "function-key", "api-key", "jwt"])]
    auth: String,
    /// CORS: allowed origin (repeat, or `*`).
    #[arg(long = "cors-origin")]
    cors_origins: Vec<String>,
    /// CORS: allowed methods (comma separated; default `*`).
    #[arg(long, value_delimiter = ',')]
    cors_methods: Vec<String>,
    /// CORS: allowed request headers (comma separated; default `*`).
    #[arg(long, value_delimiter = ',')]
    cors_headers: Vec<String>,
    /// CORS: how long browsers may cache a preflight answer, seconds.
    #[arg(long)]
    cors_max_age: Option<u64>,
    /// CORS: allow credentialed requests.
    #[arg(long)]
    cors_credentials: bool,
    /// Largest request body in bytes (default 6 MB); larger ones get 413.
    #[arg(long)]
    body_limit: Option<usize>,
}

impl AccessFlags {
    fn apply(&self, doc: &mut Value) {
        doc["auth"] = self.auth.replace('-', "_").into();
        if !self.cors_origins.is_empty() {
            let or_star = |v: &Vec<String>| {
                if v.is_empty() {
                    vec!["*".to_string()]
                } else {
                    v.clone()
                }
            };
            doc["cors"] = json!({
                "allow_origins": self.cors_origins,
                "allow_methods": or_star(&self.cors_methods),
                "allow_headers": or_star(&self.cors_headers),
                "max_age": self.cors_max_age,
                "allow_credentials": self.cors_credentials,
            });
        }
        if let Some(b) = self.body_limit {
            doc["body_limit"] = b.into();
        }
    }
}

#[derive(clap::Args)]
struct AddRoute {
    /// `GET /users/{id}`, `ANY /files/{proxy+}`, `$default`.
    route: String,
    /// Function, optionally with a version or alias: `name[:qualifier]`;
    /// or `workflow:NAME` to start a state machine (EXPRESS: answers with its
    /// output; STANDARD: answers with the execution ARN).
    function: String,
    /// `1.0` (REST API) or `2.0` (HTTP API).
    #[arg(long, default_value = "2.0")]
    payload_format: String,
    /// A WebSocket route ($connect, $disconnect, $default or a selection value).
    #[arg(long)]
    websocket: bool,
    /// WebSocket route-selection expression (default `$request.body.action`).
    #[arg(long)]
    route_selection: Option<String>,
    #[command(flatten)]
    access: AccessFlags,
    /// JWT: required issuer.
    #[arg(long)]
    jwt_issuer: Option<String>,
    /// JWT: accepted audience (repeat).
    #[arg(long)]
    jwt_audience: Vec<String>,
    /// JWT: JWKS file with the RS256/ES256 public keys.
    #[arg(long)]
    jwks_file: Option<PathBuf>,
    /// JWT: environment variable of the server holding an HS256 secret.
    #[arg(long)]
    jwt_secret_env: Option<String>,
    /// JWT: read an HS256 secret from this file (stored sealed).
    #[arg(long)]
    jwt_secret_file: Option<PathBuf>,
    /// Steady requests per second allowed (429 past it).
    #[arg(long)]
    rate: Option<f64>,
    /// Requests allowed at once before --rate applies (default: --rate, at least 1).
    #[arg(long)]
    burst: Option<u32>,
    /// Replace a route with the same key that targets the same function.
    #[arg(long)]
    replace: bool,
}

#[derive(Subcommand)]
enum RoutesCommand {
    /// Map `METHOD /path` (or `$default`; `$connect`… with --websocket) to a function.
    Add(Box<AddRoute>),
    /// List routes.
    Ls,
    /// Remove a route by id or by key (`GET /users/{id}`).
    Rm { route: String },
}

pub async fn routes(args: RoutesArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client)?;
    let json = args.client.json;
    match args.command {
        RoutesCommand::Add(add) => {
            let AddRoute {
                route,
                function,
                payload_format,
                websocket,
                route_selection,
                access,
                jwt_issuer,
                jwt_audience,
                jwks_file,
                jwt_secret_env,
                jwt_secret_file,
                rate,
                burst,
                replace,
            } = *add;
            let mut doc = match function.strip_prefix("workflow:") {
                Some(w) => json!({ "route": route, "workflow": w }),
                None => json!({ "route": route, "function": function }),
            };
            if websocket {
                doc["api"] = "websocket".into();
                if let Some(e) = route_selection {
                    doc["route_selection_expression"] = e.into();
                }
            } else {
                doc["payload_format"] = payload_format.into();
            }
            access.apply(&mut doc);
            if access.auth == "jwt" {
                let mut jwt = json!({ "audience": jwt_audience });
                if let Some(i) = jwt_issuer {
                    jwt["issuer"] = i.into();
                }
                if let Some(f) = jwks_file {
                    let abs = std::path::absolute(&f).unwrap_or(f);
                    jwt["jwks_file"] = abs.display().to_string().into();
                }
                if let Some(v) = jwt_secret_env {
                    jwt["secret_env"] = v.into();
                }
                if let Some(f) = jwt_secret_file {
                    let s = std::fs::read_to_string(&f)
                        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?;
                    jwt["secret"] = s.trim_end().into();
                }
                doc["jwt"] = jwt;
            }
            if let Some(rate) = rate {
                doc["rate_limit"] =
                    json!({ "rate": rate, "burst": burst.unwrap_or((rate.ceil() as u32).max(1)) });
            }
            let path = if replace {
                "/v1/routes?replace=true"
            } else {
                "/v1/routes"
            };
            let r = client
                .json(client.request(Method::POST, path).json(&doc))
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "{} {} -> {}",
                    r["id"].as_str().unwrap_or(""),
                    r["route"].as_str().unwrap_or(""),
                    target(&r)
                );
            }
        }
        RoutesCommand::Ls => {
            let v = client
                .json(client.request(Method::GET, "/v1/routes"))
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v["routes"])?);
            } else {
                println!(
                    "{:<14} {:<10} {:<32} {:<24} {:<7} AUTH",
                    "ID", "API", "ROUTE", "FUNCTION", "FORMAT"
                );
                for r in v["routes"].as_array().into_iter().flatten() {
                    println!(
                        "{:<14} {:<10} {:<32} {:<24} {:<7} {}",
                        r["id"].as_str().unwrap_or(""),
                        r["api"].as_str().unwrap_or("http"),
                        r["route"].as_str().unwrap_or(""),
                        target(r),
                        r["payload_format"]
                            .as_str()
                            .unwrap_or(if r["api"] == "websocket" { "-" } else { "2.0" }),
                        r["auth"].as_str().unwrap_or("none"),
                    );
                }
            }
        }
        RoutesCommand::Rm { route } => {
            client
                .send(client.request(Method::DELETE, &format!("/v1/routes/{}", encode(&route))))
                .await?;
            if json {
                println!("{}", json!({ "deleted": route }));
            } else {
                println!("removed {route}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn target(r: &Value) -> String {
    if let Some(w) = r["workflow"].as_str() {
        return format!("workflow:{w}");
    }
    match r["qualifier"].as_str() {
        Some(q) => format!("{}:{q}", r["function"].as_str().unwrap_or("")),
        None => r["function"].as_str().unwrap_or("").to_string(),
    }
}

/// Percent-encodes a path segment (route keys hold spaces, `/` and braces).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(clap::Args)]
pub struct UrlArgs {
    #[command(subcommand)]
    command: UrlCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand)]
enum UrlCommand {
    /// Give a function a URL (or update its settings; the URL stays the same).
    Create {
        /// `name[:qualifier]`.
        function: String,
        #[command(flatten)]
        access: AccessFlags,
        /// Pass a streaming function's response on as it is written
        /// (`awslambda.streamifyResponse`; AWS's InvokeMode RESPONSE_STREAM).
        #[arg(long)]
        stream: bool,
    },
    /// Show a function's URL.
    Get { function: String },
    /// Remove a function's URL.
    Rm { function: String },
}

pub async fn url(args: UrlArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client)?;
    let json = args.client.json;
    let print = |v: &Value| -> anyhow::Result<()> {
        if json {
            println!("{}", serde_json::to_string_pretty(v)?);
        } else {
            println!("{}", v["url"].as_str().unwrap_or(""));
        }
        Ok(())
    };
    match args.command {
        UrlCommand::Create {
            function,
            access,
            stream,
        } => {
            let (name, qualifier) = match function.split_once(':') {
                Some((n, q)) => (n.to_string(), Some(q.to_string())),
                None => (function.clone(), None),
            };
            let mut doc = json!({});
            if let Some(q) = qualifier {
                doc["qualifier"] = q.into();
            }
            access.apply(&mut doc);
            if stream {
                doc["invoke_mode"] = "response_stream".into();
            }
            let v = client
                .json(
                    client
                        .request(Method::PUT, &format!("/v1/functions/{name}/url"))
                        .json(&doc),
                )
                .await?;
            print(&v)?;
        }
        UrlCommand::Get { function } => {
            let v = client
                .json(client.request(Method::GET, &format!("/v1/functions/{function}/url")))
                .await?;
            print(&v)?;
        }
        UrlCommand::Rm { function } => {
            client
                .send(client.request(Method::DELETE, &format!("/v1/functions/{function}/url")))
                .await?;
            if json {
                println!("{}", json!({ "deleted": function }));
            } else {
                println!("removed the URL of {function}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct GatewayKeysArgs {
    #[command(subcommand)]
    command: GatewayKeysCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand)]
enum GatewayKeysCommand {
    /// Create a key; its value is printed once (only a hash is stored).
    Create {
        /// `function` (x-functions-key / ?code=) or `api` (x-api-key).
        #[arg(long, default_value = "function", value_parser = ["function", "api"])]
        kind: String,
        /// Only this function's routes and URL accept the key.
        #[arg(long, required_unless_present = "global", conflicts_with = "global")]
        function: Option<String>,
        /// Every key-protected route and URL accepts the key.
        #[arg(long)]
        global: bool,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List keys (never their values).
    Ls,
    /// Delete a key.
    Rm { id: String },
}

pub async fn gateway_keys(args: GatewayKeysArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client)?;
    let json = args.client.json;
    match args.command {
        GatewayKeysCommand::Create {
            kind,
            function,
            global,
            description,
        } => {
            let k = client
                .json(client.request(Method::POST, "/v1/gateway/keys").json(
                    &json!({ "kind": kind, "function": function, "global": global, "description": description }),
                ))
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&k)?);
            } else {
                let header = if kind == "api" {
                    "x-api-key"
                } else {
                    "x-functions-key"
                };
                println!(
                    "{} key {} created (the value is shown only now):",
                    kind,
                    k["id"].as_str().unwrap_or("")
                );
                println!("  {header}: {}", k["value"].as_str().unwrap_or(""));
            }
        }
        GatewayKeysCommand::Ls => {
            let v = client
                .json(client.request(Method::GET, "/v1/gateway/keys"))
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v["keys"])?);
            } else {
                println!(
                    "{:<16} {:<9} {:<20} {:<30} DESCRIPTION",
                    "ID", "KIND", "FUNCTION", "CREATED"
                );
                for k in v["keys"].as_array().into_iter().flatten() {
                    println!(
                        "{:<16} {:<9} {:<20} {:<30} {}",
                        k["id"].as_str().unwrap_or(""),
                        k["kind"].as_str().unwrap_or(""),
                        k["function"].as_str().unwrap_or("*"),
                        k["created_at"].as_str().unwrap_or(""),
                        k["description"].as_str().unwrap_or("")
                    );
                }
            }
        }
        GatewayKeysCommand::Rm { id } => {
            client
                .send(client.request(Method::DELETE, &format!("/v1/gateway/keys/{id}")))
                .await?;
            if json {
                println!("{}", json!({ "deleted": id }));
            } else {
                println!("deleted {id}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
