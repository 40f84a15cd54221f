//! Opening a session: SSL/GSS negotiation, cancel requests, the startup packet, and
//! authenticating the client.

use std::time::Duration;

use crate::access::AuthQuery;
use crate::auth::{AuthError, ScramKeys, ScramServer, parse_sasl_initial_response};
use crate::config::{AuthMethod, UserConfig};
use crate::protocol::{
    Frame, SqlState, StartupPacket, StartupParams, read_cstr, read_startup_packet, tag,
};

use super::Shared;
use super::client::ClientConn;
use super::error::FrontendError;
use super::users::{ClientUser, UserSecret};

/// What a client's first packets asked for.
pub enum Opening {
    /// A cancel request was handled; the connection ends.
    Cancelled,
    Session(StartupParams),
}

/// Who the session runs as on the servers.
#[derive(Clone)]
pub struct ServerCredentials {
    pub user: String,
    pub password: Option<String>,
    /// What the client's SCRAM exchange proved (auth_query users): logs in to servers that
    /// hold the same verifier.
    pub scram_keys: Option<ScramKeys>,
    /// The role's md5 hash read by auth_query: logs in to servers that demand md5.
    pub md5_hash: Option<String>,
}

/// Reads packets until a StartupMessage (answering SSL and GSS requests with 'N') or a
/// CancelRequest.
pub async fn read_opening(
    client: &mut ClientConn,
    shared: &Shared,
) -> Result<Opening, FrontendError> {
    // A client may ask for GSS and then SSL before starting up; more is a loop to refuse.
    for _ in 0..3 {
        match read_startup_packet(&mut client.stream).await? {
            StartupPacket::SslRequest => {
                client.answer_ssl_request(&shared.live().client_tls).await?
            }
            StartupPacket::GssEncRequest => client.decline_encryption().await?,
            StartupPacket::Cancel(key) => {
                shared.cancels.cancel(key, Duration::from_secs(5)).await;
                return Ok(Opening::Cancelled);
            }
            StartupPacket::Startup { minor, params } => {
                client.check_encryption(&shared.live().client_tls)?;
                check_startup(client, minor, &params).await?;
                return Ok(Opening::Session(params));
            }
        }
    }
    Err(FrontendError::refuse(
        SqlState::PROTOCOL_VIOLATION,
        "too many SSL/GSS requests before the startup packet",
    ))
}

async fn check_startup(
    client: &mut ClientConn,
    minor: u16,
    params: &StartupParams,
) -> Result<(), FrontendError> {
    if params.wants_replication() {
        return Err(FrontendError::refuse(
            SqlState::FEATURE_NOT_SUPPORTED,
            "pgsplit does not proxy replication connections; connect to the server directly for replication",
        ));
    }
    if params.user().is_none() {
        return Err(FrontendError::refuse(
            SqlState::INVALID_AUTHORIZATION,
            "no PostgreSQL user name specified in startup packet",
        ));
    }
    // Newer clients may ask for 3.x or `_pq_.` extensions: say what we speak, as PostgreSQL does.
    let unknown: Vec<&str> = params
        .pairs
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("_pq_."))
        .collect();
    if minor > 0 || !unknown.is_empty() {
        client.writer().negotiate_protocol_version(0, &unknown);
    }
    Ok(())
}

/// Authenticates the client, then takes one of its user's connection slots (53300 when the
/// user has `limits.max_connections_per_user` sessions open already).
pub async fn authenticate(
    client: &mut ClientConn,
    shared: &Shared,
    params: &StartupParams,
) -> Result<ServerCredentials, FrontendError> {
    let credentials = authenticate_user(client, shared, params).await?;
    let user = params.user().unwrap_or_default();
    let limit = shared.live().config.limits.max_connections_per_user;
    client.user_slot = Some(shared.user_slots.acquire(user, limit).ok_or_else(|| {
        FrontendError::refuse(
            SqlState::TOO_MANY_CONNECTIONS,
            format!("too many connections for user \"{user}\" (limit {limit})"),
        )
    })?);
    Ok(credentials)
}

/// Checks the client against the configured users, then against auth_query, or, with neither
/// configured, leaves the verdict to the server (`None` password until the server asks for one).
async fn authenticate_user(
    client: &mut ClientConn,
    shared: &Shared,
    params: &StartupParams,
) -> Result<ServerCredentials, FrontendError> {
    let user = params.user().unwrap_or_default();
    let live = shared.live();
    client.check_access(&live.config.access, params)?;
    if let Some(configured) = live.users.get(user) {
        verify_client(client, configured).await?;
        return Ok(configured.server_credentials());
    }
    if let Some(lookup) = &live.auth_query {
        let database = params.database().unwrap_or_default();
        return authenticate_by_query(client, shared, lookup, user, database).await;
    }
    if live.users.is_empty() {
        return Ok(ServerCredentials {
            user: user.to_string(),
            password: None,
            scram_keys: None,
            md5_hash: None,
        });
    }
    // PostgreSQL does not reveal whether a user exists: same answer as a wrong password.
    Err(wrong_password(user))
}

/// Checks the client against the password stored on the primary; the servers then see the
/// client's own proof (SCRAM pass-through).
async fn authenticate_by_query(
    client: &mut ClientConn,
    shared: &Shared,
    lookup: &AuthQuery,
    user: &str,
    database: &str,
) -> Result<ServerCredentials, FrontendError> {
    let primary = shared
        .topology
        .load()
        .cluster_for_database(database)
        .primary
        .addr
        .clone();
    let secret = lookup
        .secret(user, &primary)
        .await
        .map_err(|e| FrontendError::refuse(SqlState::CONNECTION_FAILURE, e))?
        .ok_or_else(|| wrong_password(user))?;
    let auth = if secret.starts_with("md5") {
        AuthMethod::Md5
    } else {
        AuthMethod::ScramSha256
    };
    let stored = UserConfig {
        name: user.to_string(),
        password: Some(secret.to_string()),
        auth,
        server_user: None,
        server_password: None,
    };
    let users = super::users::prepare_users(std::slice::from_ref(&stored))
        .map_err(|_| wrong_password(user))?;
    let found = users.get(user).ok_or_else(|| wrong_password(user))?;
    let scram_keys = verify_client(client, found).await?;
    Ok(ServerCredentials {
        scram_keys,
        md5_hash: secret.starts_with("md5").then(|| secret.to_string()),
        ..found.server_credentials()
    })
}

/// Ok with what a SCRAM exchange proved (None for the other methods), or 28P01.
async fn verify_client(
    client: &mut ClientConn,
    user: &ClientUser,
) -> Result<Option<ScramKeys>, FrontendError> {
    let proven = match &user.secret {
        UserSecret::Trust => Some(None),
        UserSecret::Cleartext(expected) => {
            let given = ask_cleartext_password(client).await?;
            crate::auth::constant_time_eq(given.as_bytes(), expected.as_bytes()).then_some(None)
        }
        UserSecret::Md5(secret) => {
            let salt: [u8; 4] = rand::random();
            client.writer().authentication(5, &salt);
            let answer = read_password_message(client).await?;
            let response = read_cstr(answer.body()).map_or(&b""[..], |(s, _)| s.as_bytes());
            crate::auth::md5_verify(secret, &user.name, salt, response).then_some(None)
        }
        UserSecret::Scram(verifier) => scram_exchange(client, ScramServer::new(verifier.clone()))
            .await?
            .map(Some),
    };
    proven.ok_or_else(|| wrong_password(&user.name))
}

/// Runs SCRAM-SHA-256 to the end: what the client proved, or None for a wrong password.
async fn scram_exchange(
    client: &mut ClientConn,
    mut scram: ScramServer,
) -> Result<Option<ScramKeys>, FrontendError> {
    client.writer().authentication_sasl(&["SCRAM-SHA-256"]);
    let first = read_password_message(client).await?;
    let (mechanism, data) = parse_sasl_initial_response(first.body()).map_err(auth_refusal)?;
    if mechanism != "SCRAM-SHA-256" {
        return Err(FrontendError::refuse(
            SqlState::PROTOCOL_VIOLATION,
            format!("client selected an invalid SASL authentication mechanism \"{mechanism}\""),
        ));
    }
    let server_first = scram.client_first(&data).map_err(auth_refusal)?;
    client.writer().authentication(11, &server_first);
    let last = read_password_message(client).await?;
    match scram.client_final(last.body()) {
        Ok(server_final) => {
            client.writer().authentication(12, &server_final);
            Ok(scram.proven_keys())
        }
        Err(AuthError::WrongPassword) => Ok(None),
        Err(e) => Err(auth_refusal(e)),
    }
}

/// Asks the client for its password in clear text (used to verify configured plain passwords,
/// and in pass-through mode to hand it to the server).
pub async fn ask_cleartext_password(client: &mut ClientConn) -> Result<String, FrontendError> {
    client.writer().authentication(3, &[]);
    let frame = read_password_message(client).await?;
    read_cstr(frame.body())
        .map(|(s, _)| s.to_string())
        .ok_or_else(|| {
            FrontendError::refuse(
                SqlState::PROTOCOL_VIOLATION,
                "invalid password packet: not a NUL-terminated UTF-8 string",
            )
        })
}

async fn read_password_message(client: &mut ClientConn) -> Result<Frame, FrontendError> {
    client
        .flush()
        .await
        .map_err(|_| FrontendError::ClientGone)?;
    match client.read_frame().await? {
        Some(frame) if frame.tag == tag::PASSWORD => Ok(frame),
        Some(frame) => Err(FrontendError::refuse(
            SqlState::PROTOCOL_VIOLATION,
            format!(
                "expected a password response, got message type '{}'",
                char::from(frame.tag)
            ),
        )),
        None => Err(FrontendError::ClientGone),
    }
}

fn wrong_password(user: &str) -> FrontendError {
    FrontendError::refuse(
        SqlState::INVALID_PASSWORD,
        format!("password authentication failed for user \"{user}\""),
    )
}

fn auth_refusal(e: AuthError) -> FrontendError {
    FrontendError::refuse(SqlState(e.sqlstate()), e.to_string())
}
