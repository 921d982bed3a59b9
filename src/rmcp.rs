//! [rmcp] integration: an rmcp client whose Streamable HTTP traffic goes through the
//! [`ClientCredentialsLayer`], so it gets machine-to-machine OAuth in a few lines.
//!
//! [`McpHttpClient`] implements rmcp's [`StreamableHttpClient`] for any
//! `tower::Service<http::Request<Full<Bytes>>>`: by default a hyper-util client (HTTPS through
//! rustls with the default `rustls` feature) wrapped in the layer, or a stack of your own with the
//! layer in it. [`transport`] builds the rmcp transport from the layer in one call.
//!
//! Enabled by the `rmcp` feature, which depends on rmcp 3.9 without its defaults and with only
//! `client` and `transport-streamable-http-client`: no reqwest, no rmcp `auth`, no second crypto
//! library. Your own `Cargo.toml` needs the same rmcp (for `ServiceExt::serve` and the model
//! types): `rmcp = { version = "3.9", default-features = false, features = ["client",
//! "transport-streamable-http-client"] }`.
//!
//! # Example
//!
//! ```no_run
//! use rmcp::ServiceExt as _;
//! use rmcp::model::CallToolRequestParams;
//! use tower_client_credentials::{ClientCredentialsLayer, Credentials};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let url = "https://mcp.example.com/mcp";
//! let credentials = Credentials::client_secret("reporting-job", std::env::var("CLIENT_SECRET")?)?;
//! let auth = ClientCredentialsLayer::builder(url, credentials)?.build()?;
//!
//! // The only line that differs from an unauthenticated rmcp client.
//! let transport = tower_client_credentials::rmcp::transport(url, &auth);
//!
//! let client = ().serve(transport).await?;
//! let tools = client.list_all_tools().await?;
//! let mut arguments = serde_json::Map::new();
//! arguments.insert("text".into(), "hello".into());
//! let result = client
//!     .call_tool(CallToolRequestParams::new("echo").with_arguments(arguments))
//!     .await?;
//! println!("{} tools; echo answered {:?}", tools.len(), result.content);
//! client.cancel().await?;
//! # Ok(())
//! # }
//! ```
//!
//! With rmcp settings of your own (custom headers, retry policy, SSE event size), or with your own
//! tower stack (timeouts, a proxy connector, tracing), build the client and the transport
//! separately:
//!
//! ```no_run
//! # use tower_client_credentials::{ClientCredentialsLayer, Credentials};
//! # fn doc(auth: ClientCredentialsLayer, my_stack: tower::util::BoxCloneService<http::Request<http_body_util::Full<bytes::Bytes>>, http::Response<http_body_util::Full<bytes::Bytes>>, tower_client_credentials::BoxError>) {
//! use rmcp::transport::StreamableHttpClientTransport;
//! use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
//! use tower::Layer as _;
//! use tower_client_credentials::rmcp::McpHttpClient;
//!
//! let config = StreamableHttpClientTransportConfig::with_uri("https://mcp.example.com/mcp")
//!     .max_sse_event_size(1024 * 1024);
//! // The default hyper-util client behind the layer…
//! let transport = StreamableHttpClientTransport::with_client(McpHttpClient::with_layer(&auth), config.clone());
//! // …or any service with the layer in it.
//! let transport = StreamableHttpClientTransport::with_client(McpHttpClient::new(auth.layer(my_stack)), config);
//! # }
//! ```
//!
//! # What goes through, and how
//!
//! - **Tokens.** Every request (the `POST` of each JSON-RPC message, the `GET` of the server's
//!   event stream, the `DELETE` that ends the session) goes through the layer, which adds the
//!   bearer token, discovers the authorization server from the first `401` when it was not
//!   configured, refreshes ahead of expiry and, on a `401` (or an `insufficient_scope` `403`),
//!   gets a new token (with the scopes asked for) and replays the request once: the bodies are
//!   `Full<Bytes>`, so they can be replayed. rmcp sees the final response only.
//! - **Server-Sent Events** are parsed as they arrive, never buffered: the response body is handed
//!   to rmcp as a stream as soon as the headers are in, with the transport's
//!   `max_sse_event_size` enforced on the raw bytes of each event.
//! - **Sessions.** The `Mcp-Session-Id` of each response goes back to rmcp, which sends it on
//!   every later request; `404` on a request that carried one is
//!   [`StreamableHttpError::SessionExpired`], so rmcp re-initializes. `Last-Event-ID` is sent when
//!   rmcp resumes a stream.
//! - **Errors** keep their kind: a `401` or `403` the layer could not cure becomes
//!   [`StreamableHttpError::AuthRequired`] or [`StreamableHttpError::InsufficientScope`] with the
//!   server's challenge, `429` and `5xx` become [`StreamableHttpError::HttpStatus`] with
//!   `Retry-After`, a JSON-RPC error in an error response is handed to rmcp as the answer, and a
//!   failure of the layer itself (the token endpoint refused the credentials, discovery failed…)
//!   is [`StreamableHttpError::Client`] holding an [`HttpError`] of kind
//!   [`HttpErrorKind::Auth`] whose source is this crate's [`Error`]. rmcp wraps transport errors
//!   in types that do not all report a `source()`; [`auth_error`] finds the [`Error`] through
//!   them.
//! - **Nothing secret** is printed: the `Authorization` header is marked sensitive, errors carry
//!   no token, and text quoted from a server's error response is truncated and escaped.
//!
//! rmcp resumes an SSE stream that ended with an error (an oversized event included) according to
//! the transport's retry policy, as it does with its own clients' stream errors.

use std::borrow::Cow;
use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use ::rmcp::model::{
    ClientJsonRpcMessage, ClientRequest, ErrorData, JsonRpcError, ServerJsonRpcMessage,
};
use ::rmcp::service::{ClientInitializeError, ServiceError};
use ::rmcp::transport::common::client_side_sse::BoxedSseResponse;
use ::rmcp::transport::streamable_http_client::{
    AuthRequiredError, HttpStatusError, InsufficientScopeError, StreamableHttpClient,
    StreamableHttpClientTransportConfig, StreamableHttpError, StreamableHttpPostResponse,
};
use ::rmcp::transport::worker::WorkerQuitReason;
use ::rmcp::transport::{DynamicTransportError, StreamableHttpClientTransport};
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::header::{HeaderMap, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame};
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tower::util::BoxCloneSyncService;
use tower::{Layer as _, Service, ServiceExt as _};

use crate::challenge::BearerChallenge;
use crate::error::{BoxError, escape_for_message};
use crate::retry::CloneBody;
use crate::{ClientCredentialsLayer, Error};

const SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
const JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";
const ACCEPT_POST: &str = "application/json, text/event-stream";

/// The largest SSE event accepted when rmcp does not say (its transport's default, 16 MiB).
const DEFAULT_MAX_SSE_EVENT_SIZE: usize = 16 * 1024 * 1024;
/// The largest JSON response body read (rmcp's own clients use the same).
const MAX_JSON_BODY: usize = 16 * 1024 * 1024;
/// The most read of an error response's body, looking for a JSON-RPC error.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The default HTTP stack of [`McpHttpClient::with_layer`]: a hyper-util client behind the layer,
/// type-erased.
pub type DefaultService = BoxCloneSyncService<Request<Full<Bytes>>, Response<Incoming>, BoxError>;

/// An rmcp [`StreamableHttpClient`] that sends every request through a tower service, normally one
/// with a [`ClientCredentialsLayer`] in it.
///
/// Cheap to clone (it clones the service); each request uses a clone of the service, so the
/// service's clones must share their state, as the layer's do. A static token set with rmcp's
/// `StreamableHttpClientTransportConfig::auth_header` is sent as `Bearer`, and replaced by the
/// layer's on requests to the protected resource: leave it unset. See the [module docs](self).
#[derive(Clone)]
pub struct McpHttpClient<S = DefaultService> {
    inner: S,
}

impl McpHttpClient {
    /// A hyper-util client (HTTP/1.1, pooled, HTTPS through rustls with the webpki roots and the
    /// aws-lc-rs provider when the `rustls` feature is on) behind `layer`. The client shares the
    /// layer's token cache.
    ///
    /// Without the `rustls` feature it speaks plain HTTP only (`https` URLs fail); bring your own
    /// service to [`McpHttpClient::new`] then.
    pub fn with_layer<R>(layer: &ClientCredentialsLayer<R>) -> Self
    where
        R: CloneBody<Full<Bytes>> + Send + Sync + 'static,
    {
        Self::new(default_service(layer))
    }
}

impl<S> McpHttpClient<S> {
    /// Uses `service` for every request: any `tower::Service<http::Request<Full<Bytes>>>` that
    /// answers with an `http::Response` whose body is a stream of `Bytes`, such as
    /// `ServiceBuilder::new().layer(auth).service(hyper_client)`.
    ///
    /// The service should not buffer response bodies (Server-Sent Events must stream) and should
    /// not follow redirects.
    pub fn new(service: S) -> Self {
        Self { inner: service }
    }

    /// The service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for McpHttpClient<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpHttpClient")
            .field("inner", &self.inner)
            .finish()
    }
}

/// The rmcp transport for the MCP server at `uri`, with [`McpHttpClient::with_layer`] and rmcp's
/// default settings. Call it inside a Tokio runtime: rmcp spawns the transport's worker at once.
///
/// Hand it to `rmcp::ServiceExt::serve`; see the [module docs](self).
pub fn transport<R>(
    uri: impl Into<Arc<str>>,
    layer: &ClientCredentialsLayer<R>,
) -> StreamableHttpClientTransport<McpHttpClient>
where
    R: CloneBody<Full<Bytes>> + Send + Sync + 'static,
{
    StreamableHttpClientTransport::with_client(
        McpHttpClient::with_layer(layer),
        StreamableHttpClientTransportConfig::with_uri(uri),
    )
}

/// The crate's default hyper-util client (the one authorization traffic uses) behind `layer`.
fn default_service<R>(layer: &ClientCredentialsLayer<R>) -> DefaultService
where
    R: CloneBody<Full<Bytes>> + Send + Sync + 'static,
{
    BoxCloneSyncService::new(layer.layer(crate::auth_client::hyper_service()))
}

impl<S, B> StreamableHttpClient for McpHttpClient<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Error = HttpError;

    fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> impl Future<Output = Result<StreamableHttpPostResponse, StreamableHttpError<HttpError>>>
    + Send
    + '_ {
        self.post_message_with_max_sse_event_size(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            DEFAULT_MAX_SSE_EVENT_SIZE,
        )
    }

    fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> impl Future<Output = Result<StreamableHttpPostResponse, StreamableHttpError<HttpError>>>
    + Send
    + '_ {
        post(
            self.inner.clone(),
            uri,
            message,
            session_id,
            Headers {
                auth_header,
                custom: custom_headers,
            },
            max_sse_event_size,
        )
    }

    fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> impl Future<Output = Result<(), StreamableHttpError<HttpError>>> + Send + '_ {
        delete(
            self.inner.clone(),
            uri,
            session_id,
            Headers {
                auth_header,
                custom: custom_headers,
            },
        )
    }

    fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> impl Future<Output = Result<BoxedSseResponse, StreamableHttpError<HttpError>>> + Send + '_
    {
        self.get_stream_with_max_sse_event_size(
            uri,
            session_id,
            last_event_id,
            auth_header,
            custom_headers,
            DEFAULT_MAX_SSE_EVENT_SIZE,
        )
    }

    fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> impl Future<Output = Result<BoxedSseResponse, StreamableHttpError<HttpError>>> + Send + '_
    {
        get(
            self.inner.clone(),
            uri,
            session_id,
            last_event_id,
            Headers {
                auth_header,
                custom: custom_headers,
            },
            max_sse_event_size,
        )
    }
}

type TransportResult<T> = Result<T, StreamableHttpError<HttpError>>;

/// The headers rmcp asks for on every request.
struct Headers {
    /// A static token from the transport's configuration, sent as `Bearer`; the layer replaces it
    /// on requests to the protected resource.
    auth_header: Option<String>,
    custom: HashMap<HeaderName, HeaderValue>,
}

async fn post<S, B>(
    service: S,
    uri: Arc<str>,
    message: ClientJsonRpcMessage,
    session_id: Option<Arc<str>>,
    headers: Headers,
    max_sse_event_size: usize,
) -> TransportResult<StreamableHttpPostResponse>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let body = serde_json::to_vec(&message).map_err(|err| {
        client_error(
            HttpErrorKind::Request,
            "cannot encode the message",
            Some(err.into()),
        )
    })?;
    let mut request = build_request(
        Method::POST,
        &uri,
        ACCEPT_POST,
        session_id.as_deref(),
        headers,
    )?;
    request
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    *request.body_mut() = Full::new(Bytes::from(body));
    let (parts, body) = send(service, request).await?.into_parts();
    let status = parts.status;
    if let Some(err) = challenge_error(status, &parts.headers) {
        return Err(err);
    }
    if matches!(status, StatusCode::ACCEPTED | StatusCode::NO_CONTENT) {
        return Ok(StreamableHttpPostResponse::Accepted);
    }
    if status == StatusCode::NOT_FOUND && session_id.is_some() {
        return Err(StreamableHttpError::SessionExpired);
    }
    let new_session = header_text(&parts.headers, &SESSION_ID);
    let content_type = header_text(&parts.headers, &CONTENT_TYPE);
    let is_json = has_media_type(content_type.as_deref(), JSON);
    if !status.is_success() {
        return refused(
            status,
            &parts.headers,
            body,
            is_json,
            &message,
            session_id.is_some(),
            new_session,
        )
        .await;
    }
    let expects_reply = matches!(message, ClientJsonRpcMessage::Request(_));
    if !expects_reply && content_length(&parts.headers) == Some(0) {
        // Servers should answer 202, but some answer an empty 200.
        return Ok(StreamableHttpPostResponse::Accepted);
    }
    if has_media_type(content_type.as_deref(), EVENT_STREAM) {
        return Ok(StreamableHttpPostResponse::Sse(
            sse_events(body, max_sse_event_size),
            new_session,
        ));
    }
    if is_json {
        let bytes = read_body(body, MAX_JSON_BODY).await?;
        return match serde_json::from_slice::<ServerJsonRpcMessage>(&bytes) {
            Ok(reply) => Ok(StreamableHttpPostResponse::Json(reply, new_session)),
            // Nothing was awaited: an odd body does not undo the acceptance.
            Err(_) if !expects_reply => Ok(StreamableHttpPostResponse::Accepted),
            Err(err) => Err(StreamableHttpError::UnexpectedServerResponse(Cow::Owned(
                format!(
                    "the JSON response is not a JSON-RPC message ({err}): {}",
                    preview(&bytes)
                ),
            ))),
        };
    }
    if !expects_reply {
        return Ok(StreamableHttpPostResponse::Accepted);
    }
    Err(StreamableHttpError::UnexpectedContentType(content_type))
}

/// A non-success answer to a POST that no challenge explained.
async fn refused<B>(
    status: StatusCode,
    headers: &HeaderMap,
    body: B,
    is_json: bool,
    message: &ClientJsonRpcMessage,
    session_attached: bool,
    new_session: Option<String>,
) -> TransportResult<StreamableHttpPostResponse>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    // Rate limits and non-JSON server errors are answered by their status alone.
    let status_error = match http_status_error(status, headers) {
        Some(err) if status == StatusCode::TOO_MANY_REQUESTS || !is_json => return Err(err.into()),
        other => other,
    };
    let bytes = match read_body(body, MAX_ERROR_BODY).await {
        Ok(bytes) => bytes,
        Err(err @ StreamableHttpError::ResponseBodyTooLarge { .. }) => {
            return Err(status_error.map_or(err, Into::into));
        }
        Err(_) => Bytes::new(),
    };
    let auth_failure = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
    // A server that predates `server/discover` refuses it with a 4xx, often without echoing the
    // id; rmcp needs a JSON-RPC error with the request's id to fall back to `initialize`.
    if let ClientJsonRpcMessage::Request(request) = message
        && matches!(request.request, ClientRequest::DiscoverRequest(_))
        && !session_attached
        && status.is_client_error()
        && !auth_failure
    {
        let error = match serde_json::from_slice::<ServerJsonRpcMessage>(&bytes) {
            Ok(ServerJsonRpcMessage::Error(error)) => error.error,
            _ => ErrorData::invalid_request(
                format!("server/discover refused with HTTP {status}"),
                None,
            ),
        };
        return Ok(StreamableHttpPostResponse::Json(
            ServerJsonRpcMessage::Error(JsonRpcError::new(Some(request.id.clone()), error)),
            None,
        ));
    }
    // A JSON-RPC error in an error response is the answer rmcp should see.
    if is_json
        && !auth_failure
        && let Ok(error @ ServerJsonRpcMessage::Error(_)) =
            serde_json::from_slice::<ServerJsonRpcMessage>(&bytes)
    {
        return Ok(StreamableHttpPostResponse::Json(error, new_session));
    }
    if let Some(err) = status_error {
        return Err(err.into());
    }
    Err(StreamableHttpError::UnexpectedServerResponse(Cow::Owned(
        format!("HTTP {status}: {}", preview(&bytes)),
    )))
}

async fn get<S, B>(
    service: S,
    uri: Arc<str>,
    session_id: Option<Arc<str>>,
    last_event_id: Option<String>,
    headers: Headers,
    max_sse_event_size: usize,
) -> TransportResult<BoxedSseResponse>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut request = build_request(
        Method::GET,
        &uri,
        EVENT_STREAM,
        session_id.as_deref(),
        headers,
    )?;
    if let Some(last_event_id) = last_event_id {
        let value = HeaderValue::try_from(last_event_id).map_err(|err| {
            client_error(
                HttpErrorKind::Request,
                "the last event id is not a header value",
                Some(err.into()),
            )
        })?;
        request.headers_mut().insert(LAST_EVENT_ID, value);
    }
    let (parts, body) = send(service, request).await?.into_parts();
    let status = parts.status;
    if status == StatusCode::METHOD_NOT_ALLOWED {
        return Err(StreamableHttpError::ServerDoesNotSupportSse);
    }
    if let Some(err) = challenge_error(status, &parts.headers) {
        return Err(err);
    }
    if let Some(err) = http_status_error(status, &parts.headers) {
        return Err(err.into());
    }
    if status == StatusCode::NOT_FOUND && session_id.is_some() {
        return Err(StreamableHttpError::SessionExpired);
    }
    if !status.is_success() {
        return Err(StreamableHttpError::UnexpectedServerResponse(Cow::Owned(
            format!("HTTP {status} to the event stream request"),
        )));
    }
    let content_type = header_text(&parts.headers, &CONTENT_TYPE);
    if !has_media_type(content_type.as_deref(), EVENT_STREAM) {
        return Err(StreamableHttpError::UnexpectedContentType(content_type));
    }
    Ok(sse_events(body, max_sse_event_size))
}

async fn delete<S, B>(
    service: S,
    uri: Arc<str>,
    session_id: Arc<str>,
    headers: Headers,
) -> TransportResult<()>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let request = build_request(
        Method::DELETE,
        &uri,
        ACCEPT_POST,
        Some(&session_id),
        headers,
    )?;
    let response = send(service, request).await?;
    let status = response.status();
    if status == StatusCode::METHOD_NOT_ALLOWED {
        return Err(StreamableHttpError::ServerDoesNotSupportDeleteSession);
    }
    if let Some(err) = challenge_error(status, response.headers()) {
        return Err(err);
    }
    if let Some(err) = http_status_error(status, response.headers()) {
        return Err(err.into());
    }
    // 404: the server no longer knows the session, which is what was asked for.
    if status.is_success() || status == StatusCode::NOT_FOUND {
        return Ok(());
    }
    Err(StreamableHttpError::UnexpectedServerResponse(Cow::Owned(
        format!("HTTP {status} to the session deletion"),
    )))
}

fn build_request(
    method: Method,
    uri: &str,
    accept: &'static str,
    session_id: Option<&str>,
    headers: Headers,
) -> TransportResult<Request<Full<Bytes>>> {
    let uri = Uri::try_from(uri).map_err(|err| {
        client_error(
            HttpErrorKind::Request,
            "invalid MCP server URI",
            Some(err.into()),
        )
    })?;
    let mut request = Request::new(Full::new(Bytes::new()));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    let map = request.headers_mut();
    for (name, value) in headers.custom {
        // rmcp's own clients refuse these; `MCP-Protocol-Version` is rmcp's to set.
        if name == ACCEPT || name == SESSION_ID || name == LAST_EVENT_ID {
            return Err(StreamableHttpError::ReservedHeaderConflict(
                name.to_string(),
            ));
        }
        map.insert(name, value);
    }
    map.insert(ACCEPT, HeaderValue::from_static(accept));
    if let Some(token) = headers.auth_header {
        let mut value = HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| {
            client_error(
                HttpErrorKind::Request,
                "the transport's auth_header is not a valid header value",
                None,
            )
        })?;
        value.set_sensitive(true);
        map.insert(AUTHORIZATION, value);
    }
    if let Some(session_id) = session_id {
        let value = HeaderValue::try_from(session_id).map_err(|err| {
            client_error(
                HttpErrorKind::Request,
                "the session id is not a header value",
                Some(err.into()),
            )
        })?;
        map.insert(SESSION_ID, value);
    }
    Ok(request)
}

async fn send<S, B>(service: S, request: Request<Full<Bytes>>) -> TransportResult<Response<B>>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: Into<BoxError>,
{
    service
        .oneshot(request)
        .await
        .map_err(|err| StreamableHttpError::Client(HttpError::from_service(err.into())))
}

/// A `401` or `403` that carries a challenge the layer could not answer.
fn challenge_error(
    status: StatusCode,
    headers: &HeaderMap,
) -> Option<StreamableHttpError<HttpError>> {
    if !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        return None;
    }
    let mut values = headers.get_all(WWW_AUTHENTICATE).iter().peekable();
    values.peek()?;
    let mut challenge = String::new();
    for value in values {
        let Ok(value) = value.to_str() else {
            return Some(StreamableHttpError::UnexpectedServerResponse(
                Cow::Borrowed("a WWW-Authenticate header is not visible ASCII"),
            ));
        };
        if !challenge.is_empty() {
            challenge.push_str(", ");
        }
        challenge.push_str(value);
    }
    if status == StatusCode::UNAUTHORIZED {
        return Some(StreamableHttpError::AuthRequired(AuthRequiredError::new(
            challenge,
        )));
    }
    let scope =
        BearerChallenge::from_headers(headers).and_then(|bearer| bearer.scope().map(str::to_owned));
    Some(StreamableHttpError::InsufficientScope(
        InsufficientScopeError::new(challenge, scope),
    ))
}

/// `429` and `5xx`, with their `Retry-After` as sent.
fn http_status_error(status: StatusCode, headers: &HeaderMap) -> Option<HttpStatusError> {
    if status != StatusCode::TOO_MANY_REQUESTS && !status.is_server_error() {
        return None;
    }
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    Some(HttpStatusError::new(status.as_u16(), retry_after))
}

fn header_text(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse().ok())
}

/// Whether a `Content-Type` names `media_type`, ignoring case and parameters.
fn has_media_type(content_type: Option<&str>, media_type: &str) -> bool {
    content_type.is_some_and(|value| {
        value
            .split(';')
            .next()
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(media_type))
    })
}

async fn read_body<B>(body: B, limit: usize) -> TransportResult<Bytes>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<LengthLimitError>() => {
            Err(StreamableHttpError::ResponseBodyTooLarge { max_size: limit })
        }
        Err(err) => Err(StreamableHttpError::Client(HttpError::new(
            HttpErrorKind::Body,
            "reading the response body failed",
            Some(err),
        ))),
    }
}

/// Server text for an error message: at most 200 characters, anything unprintable escaped.
fn preview(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "<empty body>".to_owned();
    }
    escape_for_message(&String::from_utf8_lossy(bytes))
}

fn sse_events<B>(body: B, max_event_size: usize) -> BoxedSseResponse
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    Box::pin(sse_stream::SseStream::new(EventSizeLimit {
        inner: body,
        counter: EventCounter::new(max_event_size),
        state: LimitState::Open,
    }))
}

pin_project! {
    /// A response body that fails once an SSE event grows past a size, before it is parsed: the
    /// bytes before the oversized event go through, then the error.
    struct EventSizeLimit<B> {
        #[pin]
        inner: B,
        counter: EventCounter,
        state: LimitState,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LimitState {
    Open,
    /// The bytes before the oversized event went out; the error comes next.
    TooLarge,
    Done,
}

impl<B> Body for EventSizeLimit<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = self.project();
        match *this.state {
            LimitState::Open => {}
            LimitState::TooLarge => {
                *this.state = LimitState::Done;
                return Poll::Ready(Some(Err(event_too_large(this.counter.max))));
            }
            LimitState::Done => return Poll::Ready(None),
        }
        match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => match this.counter.accept(&data) {
                    Ok(()) => Poll::Ready(Some(Ok(Frame::data(data)))),
                    Err(0) => {
                        *this.state = LimitState::Done;
                        Poll::Ready(Some(Err(event_too_large(this.counter.max))))
                    }
                    Err(at) => {
                        *this.state = LimitState::TooLarge;
                        Poll::Ready(Some(Ok(Frame::data(data.slice(..at)))))
                    }
                },
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            Some(Err(err)) => {
                *this.state = LimitState::Done;
                Poll::Ready(Some(Err(HttpError::new(
                    HttpErrorKind::Body,
                    "the event stream failed",
                    Some(err.into()),
                ))))
            }
            None => {
                *this.state = LimitState::Done;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self.state {
            LimitState::Open => self.inner.is_end_stream(),
            LimitState::TooLarge => false,
            LimitState::Done => true,
        }
    }
}

fn event_too_large(max: usize) -> HttpError {
    HttpError::new(
        HttpErrorKind::EventTooLarge,
        format!("a server-sent event is larger than {max} bytes"),
        None,
    )
}

/// Counts the bytes of the SSE event being received: every byte of its lines plus one per line
/// end; an empty line (`\n`, `\r` or `\r\n`) ends the event.
#[derive(Debug)]
struct EventCounter {
    max: usize,
    size: usize,
    line_start: bool,
    after_cr: bool,
}

impl EventCounter {
    fn new(max: usize) -> Self {
        Self {
            max,
            size: 0,
            line_start: true,
            after_cr: false,
        }
    }

    /// Takes the next bytes of the stream; `Err(i)` when byte `i` takes the current event over
    /// the limit.
    fn accept(&mut self, bytes: &[u8]) -> Result<(), usize> {
        for (i, &byte) in bytes.iter().enumerate() {
            let after_cr = std::mem::replace(&mut self.after_cr, false);
            match byte {
                // The second half of a CRLF line end.
                b'\n' if after_cr => {}
                b'\r' | b'\n' => {
                    if self.line_start {
                        self.size = 0;
                    } else {
                        self.size += 1;
                        self.line_start = true;
                    }
                    self.after_cr = byte == b'\r';
                }
                _ => {
                    self.line_start = false;
                    self.size += 1;
                }
            }
            if self.size > self.max {
                return Err(i);
            }
        }
        Ok(())
    }
}

fn client_error(
    kind: HttpErrorKind,
    message: &'static str,
    source: Option<BoxError>,
) -> StreamableHttpError<HttpError> {
    StreamableHttpError::Client(HttpError::new(kind, message, source))
}

/// What went wrong in [`McpHttpClient`], before or around an HTTP response; rmcp carries it as
/// [`StreamableHttpError::Client`]. HTTP answers that mean something to MCP (a challenge, `429`,
/// `5xx`, an expired session…) are rmcp's own [`StreamableHttpError`] variants instead.
///
/// Its `Display` includes its source's, since rmcp's wrappers do not all report sources.
pub struct HttpError {
    kind: HttpErrorKind,
    message: Cow<'static, str>,
    source: Option<BoxError>,
}

/// The category of an [`HttpError`].
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HttpErrorKind {
    /// The layer could not get or use a token: the source is this crate's [`Error`] (see
    /// [`HttpError::auth_error`]); nothing was sent to the MCP server, or its refusal could not be
    /// cured.
    Auth,
    /// The request did not get a response: connection, TLS, I/O, or a failure of another layer
    /// in the stack (a timeout…).
    Transport,
    /// The response body failed while it was read or streamed.
    Body,
    /// A server-sent event exceeded the transport's `max_sse_event_size`.
    EventTooLarge,
    /// The request could not be built: an invalid URI, header value or message.
    Request,
}

impl HttpError {
    fn new(
        kind: HttpErrorKind,
        message: impl Into<Cow<'static, str>>,
        source: Option<BoxError>,
    ) -> Self {
        Self {
            kind,
            message: message.into(),
            source,
        }
    }

    /// An error of the service: the layer's own, or one from below it.
    fn from_service(err: BoxError) -> Self {
        if find_in_chain(err.as_ref()).is_some() {
            Self::new(HttpErrorKind::Auth, "authentication failed", Some(err))
        } else {
            Self::new(
                HttpErrorKind::Transport,
                "the HTTP request failed",
                Some(err),
            )
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> HttpErrorKind {
        self.kind
    }

    /// The layer's error, when getting or using a token failed.
    pub fn auth_error(&self) -> Option<&Error> {
        self.source
            .as_deref()
            .and_then(|source| find_in_chain(source))
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl StdError for HttpError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}

/// Follows `source()` from `error` to this crate's [`Error`].
fn find_in_chain<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a Error> {
    let mut next = Some(error);
    while let Some(current) = next {
        if let Some(found) = current.downcast_ref::<Error>() {
            return Some(found);
        }
        next = current.source();
    }
    None
}

/// Finds this crate's [`Error`] in an error returned by rmcp, when getting or using a token is
/// what failed: in a `ClientInitializeError` from `serve`, a `ServiceError` from a request, a
/// `DynamicTransportError`, a `StreamableHttpError<HttpError>` or an [`HttpError`]. rmcp does not
/// report all of these as `source()`s; this looks through them.
///
/// ```no_run
/// # async fn doc(transport: rmcp::transport::StreamableHttpClientTransport<tower_client_credentials::rmcp::McpHttpClient>) {
/// use rmcp::ServiceExt as _;
/// use tower_client_credentials::ErrorKind;
///
/// match ().serve(transport).await {
///     Ok(client) => { /* … */ }
///     Err(err) => match tower_client_credentials::rmcp::auth_error(&err) {
///         Some(auth) if auth.kind() == ErrorKind::TokenEndpoint => eprintln!("credentials refused: {auth}"),
///         _ => eprintln!("MCP connection failed: {err}"),
///     },
/// }
/// # }
/// ```
pub fn auth_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a Error> {
    let mut next = Some(error);
    while let Some(current) = next {
        if let Some(found) = current.downcast_ref::<Error>() {
            return Some(found);
        }
        next = if let Some(err) = current.downcast_ref::<ClientInitializeError>() {
            match err {
                ClientInitializeError::TransportError { error, .. } => {
                    Some(error as &(dyn StdError + 'static))
                }
                ClientInitializeError::LegacyFallbackFailed { discover, fallback } => {
                    return auth_error(fallback.as_ref()).or_else(|| auth_error(discover.as_ref()));
                }
                _ => None,
            }
        } else if let Some(ServiceError::TransportSend(err)) =
            current.downcast_ref::<ServiceError>()
        {
            Some(err as &(dyn StdError + 'static))
        } else if let Some(err) = current.downcast_ref::<DynamicTransportError>() {
            Some(err.error.as_ref() as &(dyn StdError + 'static))
        } else if let Some(err) = current.downcast_ref::<StreamableHttpError<HttpError>>() {
            match err {
                StreamableHttpError::Client(err) => Some(err as &(dyn StdError + 'static)),
                other => other.source(),
            }
        } else if let Some(err) =
            current.downcast_ref::<WorkerQuitReason<StreamableHttpError<HttpError>>>()
        {
            match err {
                WorkerQuitReason::Fatal { error, .. } => Some(error as &(dyn StdError + 'static)),
                other => other.source(),
            }
        } else {
            current.source()
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Mutex;

    use ::rmcp::model::RequestId;
    use futures_util::StreamExt as _;
    use serde_json::json;
    use tower::service_fn;

    use super::*;

    /// A stand-in server: answers every request with `respond`, keeping the requests.
    #[derive(Clone)]
    struct Stub {
        seen: Arc<Mutex<Vec<Request<Full<Bytes>>>>>,
        respond: Arc<dyn Fn() -> Response<Full<Bytes>> + Send + Sync>,
    }

    impl Stub {
        fn new(respond: impl Fn() -> Response<Full<Bytes>> + Send + Sync + 'static) -> Self {
            Self {
                seen: Arc::default(),
                respond: Arc::new(respond),
            }
        }

        fn client(
            &self,
        ) -> McpHttpClient<
            impl Service<
                Request<Full<Bytes>>,
                Response = Response<Full<Bytes>>,
                Error = Infallible,
                Future = impl Send,
            > + Clone
            + Send
            + 'static,
        > {
            let stub = self.clone();
            McpHttpClient::new(service_fn(move |req: Request<Full<Bytes>>| {
                let response = (stub.respond)();
                stub.seen.lock().unwrap().push(req);
                async move { Ok::<_, Infallible>(response) }
            }))
        }

        fn last(&self) -> Request<Full<Bytes>> {
            self.seen.lock().unwrap().pop().expect("a request")
        }
    }

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        for (name, value) in headers {
            response.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        response
    }

    fn request(id: i64, method: &str) -> ClientJsonRpcMessage {
        serde_json::from_value(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {}}))
            .unwrap()
    }

    fn notification() -> ClientJsonRpcMessage {
        serde_json::from_value(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .unwrap()
    }

    const URI: &str = "https://mcp.example.com/mcp";

    async fn post_to(
        client: &impl StreamableHttpClient<Error = HttpError>,
        message: ClientJsonRpcMessage,
        session: Option<&str>,
    ) -> TransportResult<StreamableHttpPostResponse> {
        client
            .post_message(
                URI.into(),
                message,
                session.map(Into::into),
                None,
                HashMap::new(),
            )
            .await
    }

    #[tokio::test]
    async fn post_sends_the_message_with_the_mcp_headers() {
        let body = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
        let stub = Stub::new(move || {
            response(
                200,
                &[
                    ("content-type", "application/json; charset=utf-8"),
                    ("mcp-session-id", "s-2"),
                ],
                body,
            )
        });
        let client = stub.client();
        let mut custom = HashMap::new();
        custom.insert(
            HeaderName::from_static("mcp-protocol-version"),
            HeaderValue::from_static("2025-11-25"),
        );
        let answer = client
            .post_message(
                URI.into(),
                request(1, "ping"),
                Some("s-1".into()),
                Some("static-token".to_owned()),
                custom,
            )
            .await
            .unwrap();
        let StreamableHttpPostResponse::Json(ServerJsonRpcMessage::Response(reply), session) =
            answer
        else {
            panic!("expected a JSON response, got {answer:?}");
        };
        assert_eq!(reply.id, RequestId::Number(1));
        assert_eq!(session.as_deref(), Some("s-2"));

        let sent = stub.last();
        assert_eq!(sent.method(), Method::POST);
        assert_eq!(sent.uri(), URI);
        let headers = sent.headers();
        assert_eq!(headers[ACCEPT], ACCEPT_POST);
        assert_eq!(headers[CONTENT_TYPE], JSON);
        assert_eq!(headers["mcp-session-id"], "s-1");
        assert_eq!(headers["mcp-protocol-version"], "2025-11-25");
        assert_eq!(headers[AUTHORIZATION], "Bearer static-token");
        assert!(headers[AUTHORIZATION].is_sensitive());
        let body = sent.into_body().collect().await.unwrap().to_bytes();
        let sent: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(sent["method"], "ping");
    }

    #[tokio::test]
    async fn reserved_custom_headers_are_refused() {
        let stub = Stub::new(|| response(202, &[], ""));
        for name in ["accept", "mcp-session-id", "last-event-id"] {
            let mut custom = HashMap::new();
            custom.insert(HeaderName::from_static(name), HeaderValue::from_static("x"));
            let err = stub
                .client()
                .post_message(URI.into(), notification(), None, None, custom)
                .await
                .unwrap_err();
            assert!(
                matches!(&err, StreamableHttpError::ReservedHeaderConflict(n) if n == name),
                "{err:?}"
            );
        }
        assert!(stub.seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn statuses_map_to_rmcp_errors() {
        let challenge = r#"Bearer error="insufficient_scope", scope="tools:write admin""#;
        let cases: Vec<(Response<Full<Bytes>>, Option<&str>, &str)> = vec![
            (response(202, &[], ""), None, "Accepted"),
            (response(204, &[], ""), None, "Accepted"),
            (
                response(
                    401,
                    &[("www-authenticate", "Bearer error=\"invalid_token\"")],
                    "",
                ),
                None,
                "AuthRequired",
            ),
            (
                response(403, &[("www-authenticate", challenge)], ""),
                None,
                "InsufficientScope",
            ),
            (response(404, &[], ""), Some("s-1"), "SessionExpired"),
            (
                response(429, &[("retry-after", "7")], ""),
                None,
                "HttpStatus(429, 7)",
            ),
            (
                response(503, &[("content-type", "text/html")], "<h1>down</h1>"),
                None,
                "HttpStatus(503, -)",
            ),
            (
                response(
                    500,
                    &[("content-type", "application/json")],
                    r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32603,"message":"boom"}}"#,
                ),
                None,
                "JsonError",
            ),
            (response(400, &[], "bad\r\nrequest"), None, "Unexpected"),
            (
                response(200, &[("content-type", "text/html")], "<html>"),
                None,
                "ContentType",
            ),
        ];
        for (answer, session, expected) in cases {
            let answer = Arc::new(Mutex::new(Some(answer)));
            let stub = Stub::new(move || answer.lock().unwrap().take().unwrap());
            let result = post_to(&stub.client(), request(3, "tools/call"), session).await;
            let got = match &result {
                Ok(StreamableHttpPostResponse::Accepted) => "Accepted".to_owned(),
                Ok(StreamableHttpPostResponse::Json(ServerJsonRpcMessage::Error(e), _)) => {
                    assert_eq!(e.id, Some(RequestId::Number(3)));
                    assert_eq!(e.error.message, "boom");
                    "JsonError".to_owned()
                }
                Err(StreamableHttpError::AuthRequired(e)) => {
                    assert!(e.www_authenticate_header.contains("invalid_token"));
                    "AuthRequired".to_owned()
                }
                Err(StreamableHttpError::InsufficientScope(e)) => {
                    assert_eq!(e.www_authenticate_header, challenge);
                    assert_eq!(e.required_scope.as_deref(), Some("tools:write admin"));
                    "InsufficientScope".to_owned()
                }
                Err(StreamableHttpError::SessionExpired) => "SessionExpired".to_owned(),
                Err(StreamableHttpError::HttpStatus(e)) => format!(
                    "HttpStatus({}, {})",
                    e.status,
                    e.retry_after.as_deref().unwrap_or("-")
                ),
                Err(StreamableHttpError::UnexpectedServerResponse(text)) => {
                    assert_eq!(text, "HTTP 400 Bad Request: bad\\r\\nrequest");
                    "Unexpected".to_owned()
                }
                Err(StreamableHttpError::UnexpectedContentType(ct)) => {
                    assert_eq!(ct.as_deref(), Some("text/html"));
                    "ContentType".to_owned()
                }
                other => format!("{other:?}"),
            };
            assert_eq!(got, expected);
        }
    }

    #[tokio::test]
    async fn notifications_accept_an_empty_or_odd_success() {
        for answer in [
            response(200, &[("content-length", "0")], ""),
            response(200, &[("content-type", "application/json")], "not json"),
            response(200, &[], "ok"),
        ] {
            let answer = Arc::new(Mutex::new(Some(answer)));
            let stub = Stub::new(move || answer.lock().unwrap().take().unwrap());
            let result = post_to(&stub.client(), notification(), Some("s")).await;
            assert!(
                matches!(result, Ok(StreamableHttpPostResponse::Accepted)),
                "{result:?}"
            );
        }
        // A request needs a reply: an unparsable one is an error.
        let stub = Stub::new(|| response(200, &[("content-type", "application/json")], "{}"));
        let result = post_to(&stub.client(), request(1, "ping"), None).await;
        assert!(
            matches!(
                result,
                Err(StreamableHttpError::UnexpectedServerResponse(_))
            ),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_legacy_refusal_of_server_discover_becomes_a_json_rpc_error() {
        let stub = Stub::new(|| response(400, &[("content-type", "text/plain")], "unknown method"));
        let result = post_to(&stub.client(), request(9, "server/discover"), None).await;
        let Ok(StreamableHttpPostResponse::Json(ServerJsonRpcMessage::Error(error), None)) = result
        else {
            panic!("expected a JSON-RPC error, got {result:?}");
        };
        assert_eq!(error.id, Some(RequestId::Number(9)));
    }

    #[tokio::test]
    async fn sse_responses_stream_events_and_keep_the_session() {
        let body = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n";
        let stub = Stub::new(move || {
            response(
                200,
                &[
                    ("content-type", "text/event-stream"),
                    ("mcp-session-id", "s-9"),
                ],
                body,
            )
        });
        let answer = post_to(&stub.client(), request(1, "ping"), None)
            .await
            .unwrap();
        let StreamableHttpPostResponse::Sse(mut events, session) = answer else {
            panic!("expected an event stream, got {answer:?}");
        };
        assert_eq!(session.as_deref(), Some("s-9"));
        let event = events.next().await.unwrap().unwrap();
        assert!(event.data.unwrap().contains("\"result\""));
        assert!(events.next().await.is_none());
    }

    #[tokio::test]
    async fn get_opens_the_event_stream() {
        let stub = Stub::new(|| {
            response(
                200,
                &[("content-type", "text/event-stream")],
                "data: {}\n\n",
            )
        });
        let client = stub.client();
        let mut events = client
            .get_stream(
                URI.into(),
                Some("s-1".into()),
                Some("42".to_owned()),
                None,
                HashMap::new(),
            )
            .await
            .unwrap();
        assert_eq!(
            events.next().await.unwrap().unwrap().data.as_deref(),
            Some("{}")
        );
        let sent = stub.last();
        assert_eq!(sent.method(), Method::GET);
        assert_eq!(sent.headers()[ACCEPT], EVENT_STREAM);
        assert_eq!(sent.headers()["mcp-session-id"], "s-1");
        assert_eq!(sent.headers()["last-event-id"], "42");
        assert!(!sent.headers().contains_key(AUTHORIZATION));

        let stub = Stub::new(|| response(405, &[], ""));
        let result = stub
            .client()
            .get_stream(URI.into(), Some("s".into()), None, None, HashMap::new())
            .await;
        assert!(matches!(
            result,
            Err(StreamableHttpError::ServerDoesNotSupportSse)
        ));
        let stub = Stub::new(|| response(200, &[("content-type", "application/json")], "{}"));
        let result = stub
            .client()
            .get_stream(URI.into(), Some("s".into()), None, None, HashMap::new())
            .await;
        assert!(matches!(
            result,
            Err(StreamableHttpError::UnexpectedContentType(_))
        ));
    }

    #[tokio::test]
    async fn delete_ends_the_session() {
        for (status, ok) in [
            (200, true),
            (204, true),
            (404, true),
            (405, false),
            (400, false),
        ] {
            let stub = Stub::new(move || response(status, &[], ""));
            let result = stub
                .client()
                .delete_session(URI.into(), "s-1".into(), None, HashMap::new())
                .await;
            assert_eq!(result.is_ok(), ok, "{status}: {result:?}");
            if status == 405 {
                assert!(matches!(
                    result,
                    Err(StreamableHttpError::ServerDoesNotSupportDeleteSession)
                ));
            }
            let sent = stub.last();
            assert_eq!(sent.method(), Method::DELETE);
            assert_eq!(sent.headers()["mcp-session-id"], "s-1");
        }
    }

    #[tokio::test]
    async fn an_oversized_event_ends_the_stream_with_an_error() {
        let big = format!("data: {}\n\n", "x".repeat(100));
        let stub = Stub::new(move || {
            response(
                200,
                &[("content-type", "text/event-stream")],
                &format!("data: small\n\n{big}"),
            )
        });
        let mut events = stub
            .client()
            .get_stream_with_max_sse_event_size(URI.into(), None, None, None, HashMap::new(), 64)
            .await
            .unwrap();
        assert_eq!(
            events.next().await.unwrap().unwrap().data.as_deref(),
            Some("small")
        );
        let err = events.next().await.unwrap().unwrap_err();
        let source = StdError::source(&err).and_then(|s| s.downcast_ref::<HttpError>());
        assert_eq!(
            source.map(HttpError::kind),
            Some(HttpErrorKind::EventTooLarge)
        );
        assert!(events.next().await.is_none());

        // Oversized from its first byte on: the error at once.
        let stub = Stub::new(|| {
            response(
                200,
                &[("content-type", "text/event-stream")],
                &format!("data: {}\n\n", "y".repeat(100)),
            )
        });
        let mut events = stub
            .client()
            .get_stream_with_max_sse_event_size(URI.into(), None, None, None, HashMap::new(), 64)
            .await
            .unwrap();
        let mut body = EventSizeLimit {
            inner: Full::new(Bytes::from(format!("data: {}\n\n", "z".repeat(100)))),
            counter: EventCounter::new(0),
            state: LimitState::Open,
        };
        let first = body.frame().await.unwrap();
        assert!(first.is_err_and(|err| err.kind() == HttpErrorKind::EventTooLarge));
        assert!(body.frame().await.is_none());
        assert!(events.next().await.unwrap().is_err());
        assert!(events.next().await.is_none());
    }

    #[tokio::test]
    async fn service_errors_keep_their_kind_and_source() {
        let auth = McpHttpClient::new(service_fn(|_req: Request<Full<Bytes>>| async {
            Err::<Response<Full<Bytes>>, BoxError>(Box::new(Error::new(
                crate::ErrorKind::TokenEndpoint,
                "the token endpoint refused the client",
            )))
        }));
        let err = auth
            .post_message(URI.into(), notification(), None, None, HashMap::new())
            .await
            .unwrap_err();
        let StreamableHttpError::Client(http) = &err else {
            panic!("{err:?}");
        };
        assert_eq!(http.kind(), HttpErrorKind::Auth);
        assert_eq!(
            http.auth_error().map(Error::kind),
            Some(crate::ErrorKind::TokenEndpoint)
        );
        assert_eq!(
            auth_error(&err).map(Error::kind),
            Some(crate::ErrorKind::TokenEndpoint)
        );
        assert!(
            err.to_string()
                .contains("the token endpoint refused the client"),
            "{err}"
        );

        let io = McpHttpClient::new(service_fn(|_req: Request<Full<Bytes>>| async {
            Err::<Response<Full<Bytes>>, _>(std::io::Error::other("connection reset"))
        }));
        let err = io
            .post_message(URI.into(), notification(), None, None, HashMap::new())
            .await
            .unwrap_err();
        let StreamableHttpError::Client(http) = &err else {
            panic!("{err:?}");
        };
        assert_eq!(http.kind(), HttpErrorKind::Transport);
        assert!(http.auth_error().is_none());
        assert!(StdError::source(http).is_some_and(|s| s.to_string() == "connection reset"));
    }

    #[test]
    fn the_event_counter_measures_one_event_at_a_time() {
        let mut counter = EventCounter::new(10);
        // "data: 123\n" is 10 bytes: at the limit, then a blank line starts over.
        assert_eq!(counter.accept(b"data: 123\n\n"), Ok(()));
        assert_eq!(counter.accept(b"data: 123\r\n\r\n"), Ok(()));
        assert_eq!(counter.accept(b"data: 123\r\r"), Ok(()));
        // Split anywhere, CRLF included.
        assert_eq!(counter.accept(b"data: 1"), Ok(()));
        assert_eq!(counter.accept(b"23\r"), Ok(()));
        assert_eq!(counter.accept(b"\n\r\n"), Ok(()));
        // Two lines of one event add up: the 11th byte is over.
        let mut counter = EventCounter::new(10);
        assert_eq!(counter.accept(b"id: 1\n"), Ok(()));
        assert_eq!(counter.accept(b"data: 1\n"), Err(4));
        let mut counter = EventCounter::new(10);
        assert_eq!(counter.accept(b"data: 12345"), Err(10));
    }

    #[test]
    fn media_types_ignore_case_and_parameters() {
        assert!(has_media_type(
            Some("Text/Event-Stream; charset=utf-8"),
            EVENT_STREAM
        ));
        assert!(has_media_type(Some("application/json"), JSON));
        assert!(!has_media_type(Some("application/json-seq"), JSON));
        assert!(!has_media_type(None, JSON));
    }

    #[test]
    fn debug_hides_the_authorization_header() {
        let stub = Stub::new(|| response(202, &[], ""));
        let client = stub.client();
        let rendered = format!("{:?}", McpHttpClient::new(()));
        assert!(rendered.contains("McpHttpClient"));
        let request = build_request(
            Method::POST,
            URI,
            ACCEPT_POST,
            None,
            Headers {
                auth_header: Some("s3cr3t-token".to_owned()),
                custom: HashMap::new(),
            },
        )
        .unwrap();
        assert!(!format!("{request:?}").contains("s3cr3t-token"));
        drop(client);
    }
}
