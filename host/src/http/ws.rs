//! `GET /api/v1/ws`: the caller's event channel (`user_<id>`) over a
//! WebSocket. Authenticated with the access token, as the `token` query
//! parameter or as a `bearer.<token>` entry of `Sec-WebSocket-Protocol`
//! (next to `pingvas.v1`, which the server selects). `last_event_id`
//! resumes after a reconnect. Events are documented in
//! `docs/websocket-events.md`.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use utoipa::IntoParams;

use super::extract::ApiQuery;
use crate::app::SharedState;
use crate::auth::tokens::TokenError;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::events::{Event, Subscription, channel_of};

pub const PROTOCOL: &str = "pingvas.v1";
/// The largest message or frame a client may send (pings and small
/// requests need far less).
pub const MAX_CLIENT_MESSAGE: usize = 4 << 10;
const PING_EVERY: Duration = Duration::from_secs(20);
/// The close code when the access token expires: reconnect with a fresh
/// one (and `last_event_id`).
pub const TOKEN_EXPIRED_CLOSE: u16 = 4001;
/// A client that answers no ping for this long is dropped.
const DEAD_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WsQuery {
    /// The access token (or send it as `Sec-WebSocket-Protocol: pingvas.v1, bearer.<token>`).
    pub token: Option<String>,
    /// Resume: replay the events after this id.
    pub last_event_id: Option<String>,
}

fn protocol_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix("bearer.").map(str::to_owned))
}

/// 실시간 이벤트 (WebSocket)
#[utoipa::path(get, path = "/ws", tag = "events", params(WsQuery),
    responses((status = 101, description = "switching to the event stream"),
        (status = 401, description = "UNAUTHORIZED / INVALID_TOKEN / TOKEN_EXPIRED")))]
pub async fn events(
    State(state): State<SharedState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<WsQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let token = q
        .token
        .filter(|t| !t.is_empty())
        .or_else(|| protocol_token(&headers))
        .ok_or(ErrorCode::Unauthorized)?;
    let claims = state.auth.authenticate(&token).await.map_err(|e| match e {
        TokenError::Expired => ErrorCode::TokenExpired,
        TokenError::Invalid => ErrorCode::InvalidToken,
    })?;
    let after = match q.last_event_id.as_deref() {
        None | Some("") => None,
        Some(id) => Some(
            id.parse::<u64>()
                .map_err(|_| ApiError::invalid_param("last_event_id", "an event id"))?,
        ),
    };
    let user_id = claims.sub;
    let upgrade = upgrade.map_err(|e| ApiError::invalid_param("upgrade", e.body_text()))?;
    let max = state.config.ws_max_per_user;
    let Some(sub) = state.events.subscribe_within(&user_id, after, max).await else {
        return Err(ApiError::with_details(
            ErrorCode::RateLimited,
            json!({ "reason": "too many open event sockets", "max_sockets": max }),
        ));
    };
    // The socket closes when the token it was opened with expires.
    let expires = chrono::DateTime::from_timestamp(claims.exp, 0).unwrap_or_default();
    Ok(upgrade
        .protocols([PROTOCOL])
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| session(state, user_id, after, sub, expires, socket)))
}

async fn send(socket: &mut WebSocket, event: &Event) -> bool {
    socket
        .send(Message::Text(event.text.as_ref().into()))
        .await
        .is_ok()
}

async fn session(
    state: SharedState,
    user_id: String,
    after: Option<u64>,
    sub: Subscription,
    expires: chrono::DateTime<chrono::Utc>,
    mut socket: WebSocket,
) {
    let left = (expires - chrono::Utc::now()).to_std().unwrap_or_default();
    let expiry = tokio::time::sleep(left);
    tokio::pin!(expiry);
    let hello = json!({
        "type": "connected",
        "channel": channel_of(&user_id),
        "resumed_from": after.map(|a| a.to_string()),
        // False when events after `last_event_id` are no longer kept:
        // refetch state through the REST API.
        "complete": sub.complete,
    });
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    let mut last = sub.start;
    for e in &sub.backlog {
        if !send(&mut socket, e).await {
            return;
        }
        last = e.seq;
    }
    let mut live = sub.live;
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            ev = live.recv() => match ev {
                Ok(e) => {
                    if e.seq > last {
                        if !send(&mut socket, &e).await { return; }
                        last = e.seq;
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    for e in state.events.since(&user_id, last).await {
                        if !send(&mut socket, &e).await { return; }
                        last = e.seq;
                    }
                }
                Err(RecvError::Closed) => return,
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(t))) => {
                    heard = tokio::time::Instant::now();
                    let is_ping = serde_json::from_str::<serde_json::Value>(&t)
                        .map(|v| v["type"] == "ping")
                        .unwrap_or(false);
                    if is_ping {
                        let pong = json!({ "type": "pong", "timestamp": chrono::Utc::now() });
                        if socket.send(Message::Text(pong.to_string().into())).await.is_err() { return; }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => heard = tokio::time::Instant::now(),
            },
            _ = ping.tick() => {
                if heard.elapsed() > DEAD_AFTER { return; }
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() { return; }
            }
            _ = state.shutdown.cancelled() => {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            _ = &mut expiry => {
                let frame = CloseFrame { code: TOKEN_EXPIRED_CLOSE, reason: "token expired".into() };
                let _ = socket.send(Message::Close(Some(frame))).await;
                return;
            }
        }
    }
}
