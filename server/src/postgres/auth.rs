//! Startup and authentication: database check (3D000), SCRAM-SHA-256 against
//! the users in the catalog when `admin` has a password, loopback trust
//! otherwise (SPEC §2), then BackendKeyData and ParameterStatus.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use cohortdb_sql::Engine;
use futures::{Sink, SinkExt};
use pgwire::api::auth::sasl::scram::ScramAuth;
use pgwire::api::auth::sasl::{SASLState, SCRAM_SHA_256_METHOD};
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata, AuthSource,
    LoginInfo, Password, StartupHandler,
};
use pgwire::api::{ClientInfo, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::{Authentication, PasswordMessageFamily};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::sync::Mutex;

use cohortdb_sql::access::lockout::{Failure, Lockout};

use super::cancel::Registry;
use super::{conn, rand_u32, Parameters};

/// SCRAM secrets of the catalog's users.
#[derive(Debug)]
struct Users {
    store: Arc<cohortdb_storage::Store>,
}

/// A secret no password matches, the same for every call with `user`: an
/// unknown user (or one without a password) goes through the whole SCRAM
/// exchange and fails where a wrong password fails, so the answer and its
/// timing do not tell whether the user exists.
fn mock_secret(user: &str) -> (Vec<u8>, Vec<u8>) {
    let salt = ring::digest::digest(
        &ring::digest::SHA256,
        format!("cohortdb mock salt\0{user}").as_bytes(),
    );
    let key = ring::digest::digest(
        &ring::digest::SHA256,
        format!("cohortdb mock key\0{user}").as_bytes(),
    );
    (salt.as_ref()[..16].to_vec(), key.as_ref().to_vec())
}

fn bad_password(user: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        "28P01".into(),
        format!("password authentication failed for user \"{user}\""),
    )))
}

#[async_trait]
impl AuthSource for Users {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        match cohortdb_sql::access::users::lookup(&self.store, user).and_then(|u| u.scram) {
            Some(secret) => Ok(Password::new(Some(secret.salt), secret.salted_password)),
            None => {
                let (salt, key) = mock_secret(user);
                Ok(Password::new(Some(salt), key))
            }
        }
    }
}

/// The startup handler of one connection.
pub struct Startup {
    engine: Arc<Engine>,
    lockout: Arc<Lockout>,
    registry: Arc<Registry>,
    scram: ScramAuth,
    state: Mutex<SASLState>,
}

impl Startup {
    /// A handler for a new connection.
    pub fn new(engine: Arc<Engine>, lockout: Arc<Lockout>, registry: Arc<Registry>) -> Startup {
        let mut scram = ScramAuth::new(Arc::new(Users {
            store: engine.store().clone(),
        }));
        scram.set_iterations(cohortdb_sql::access::users::ITERATIONS as usize);
        Startup {
            engine,
            lockout,
            registry,
            scram,
            state: Mutex::new(SASLState::Initial),
        }
    }

    async fn audit(&self, user: &str, action: &str, detail: &str) {
        let row = cohortdb_sql::runtime::audit::row(user, action, "user", user, detail);
        if let Err(e) = self.engine.store().audit(row).await {
            tracing::warn!("writing the audit row of a login failed: {e}");
        }
    }

    async fn login_failed(&self, user: &str, detail: &str) {
        let now = cohortdb_sql::model::rows::now_ms();
        match self.lockout.failed(user, now).await {
            Ok(Failure::Locked) => {
                tracing::warn!("user {user} locked after repeated failed logins");
                self.audit(user, "login_failed", &format!("{detail}; locked"))
                    .await;
            }
            Ok(Failure::Counted) => self.audit(user, "login_failed", detail).await,
            Err(e) => tracing::warn!("recording a failed login failed: {e}"),
        }
    }

    async fn finish<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let pid = (rand_u32() & 0x7fff_ffff) as i32;
        let secret = rand_u32() as i32;
        client.set_pid_and_secret_key(pid, pgwire::messages::startup::SecretKey::I32(secret));
        let state = conn(client, &self.engine);
        if let Some(user) = client.metadata().get("user") {
            state.session.set_user(user);
        }
        self.registry
            .register(pid, secret, state.session.interrupt().clone());
        *state.registration.lock().expect("registration") = Some((pid, self.registry.clone()));
        let tz = state.session.timezone().name().to_string();
        finish_authentication(client, &Parameters { timezone: tz }).await?;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        Ok(())
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if let Some(db) = client.metadata().get("database") {
                    if db != cohortdb_sql::runtime::settings::DATABASE {
                        return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                            "FATAL".into(),
                            "3D000".into(),
                            format!(
                                "database \"{db}\" does not exist (the database is \"cohortdb\")"
                            ),
                        ))));
                    }
                }
                if cohortdb_sql::access::users::passwords_required(self.engine.store()) {
                    client.set_state(PgWireConnectionState::AuthenticationInProgress);
                    client
                        .send(PgWireBackendMessage::Authentication(Authentication::SASL(
                            vec![SCRAM_SHA_256_METHOD.to_owned()],
                        )))
                        .await?;
                } else {
                    self.finish(client).await?;
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(msg) => {
                let mut state = self.state.lock().await;
                let msg = if let SASLState::Initial = *state {
                    let first = msg.into_sasl_initial_response()?;
                    if first.auth_method != SCRAM_SHA_256_METHOD {
                        return Err(PgWireError::UnsupportedSASLAuthMethod(first.auth_method));
                    }
                    *state = SASLState::ScramClientFirstReceived;
                    PasswordMessageFamily::SASLInitialResponse(first)
                } else {
                    PasswordMessageFamily::SASLResponse(msg.into_sasl_response()?)
                };
                let user = client.metadata().get("user").cloned().unwrap_or_default();
                let (res, next) = match self.scram.process_scram_message(client, msg, &state).await
                {
                    Ok(r) => r,
                    Err(PgWireError::InvalidPassword(_)) => {
                        self.login_failed(&user, "wrong password or unknown user")
                            .await;
                        return Err(bad_password(&user));
                    }
                    Err(other) => return Err(other),
                };
                if matches!(next, SASLState::Finished) {
                    let now = cohortdb_sql::model::rows::now_ms();
                    if self.lockout.is_locked(&user, now) {
                        // the same answer as a wrong password
                        self.audit(&user, "login_failed", "locked").await;
                        return Err(bad_password(&user));
                    }
                    if let Err(e) = self.lockout.succeeded(&user).await {
                        tracing::warn!("recording the login of {user} failed: {e}");
                    }
                    self.audit(&user, "login", "scram-sha-256").await;
                }
                client
                    .send(PgWireBackendMessage::Authentication(res))
                    .await?;
                *state = next;
                if matches!(*state, SASLState::Finished) {
                    drop(state);
                    self.finish(client).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}
