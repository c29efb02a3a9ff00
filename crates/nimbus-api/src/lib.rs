//! The HTTP frontend of Nimbus: the function management API (axum), its
//! authentication, the mapping of every error to an HTTP response, and the OpenAPI
//! document, which is built from the same route table so the two cannot drift.

pub mod admin;
pub mod admission;
mod aliases;
pub mod auth;
mod code_objects;
mod concurrency;
pub mod dispatcher;
pub mod error;
mod extract;
pub mod fleet;
mod functions;
pub mod invoke;
mod logs;
pub mod metrics;
mod packages;
pub mod provisioned;
pub mod recorder;
mod sandbox;
pub mod scaling;
pub mod server;
mod versions;
pub mod warm_pool;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, put};
use axum::{middleware, Json, Router};
use nimbus_code::{OriginStore, PackageLimits};
use nimbus_store::ControlStore;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
pub use crate::sandbox::SANDBOX_INIT_COMMAND;

/// Shared state of every request handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn ControlStore>,
    pub origin: Arc<OriginStore>,
    /// Region named in ARNs.
    pub region: String,
    pub package_limits: PackageLimits,
    /// The worker hosts and placement over them.
    pub fleet: Arc<fleet::Fleet>,
    pub recorder: recorder::Recorder,
    /// Wakes the async dispatcher when an event is queued.
    pub dispatcher_wakeup: Arc<tokio::sync::Notify>,
    /// Concurrency leases of running invocations.
    pub limiter: Arc<dyn nimbus_state::ConcurrencyLimiter>,
    /// Cached sums of each account's reserved concurrency.
    pub reservations: Arc<admission::ReservationTotals>,
    pub metrics: Arc<metrics::Metrics>,
    /// The dynamic warm pool of functions without provisioned concurrency.
    pub warm_pool: Arc<warm_pool::DynamicPool>,
    /// The scaling controller and the burst limit.
    pub scaling: Arc<scaling::Scaling>,
}

/// Largest JSON body: a 50 MB zip grows by a third in base64, plus the other fields.
pub const MAX_JSON_BODY_BYTES: usize = 70 * 1024 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(title = "Nimbus API", description = "Function management API of Nimbus, a self-hosted serverless platform. Every request needs `Authorization: Bearer KEY`; every error is JSON `{\"type\", \"message\"}` with an AWS exception name as type."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    paths(code_objects::put_code_object),
    components(schemas(error::ErrorBody, code_objects::ObjectVersionBody)),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Builds the documented routes. Both the router and the OpenAPI document come from
/// this one table.
fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(functions::list_functions))
        .routes(routes!(
            functions::create_function,
            functions::get_function,
            functions::delete_function
        ))
        .routes(routes!(functions::update_code))
        .routes(routes!(functions::update_configuration))
        .routes(routes!(versions::publish_version, versions::list_versions))
        .routes(routes!(aliases::list_aliases))
        .routes(routes!(aliases::put_alias, aliases::get_alias, aliases::delete_alias))
        .routes(routes!(
            concurrency::put_concurrency,
            concurrency::get_concurrency,
            concurrency::delete_concurrency
        ))
        .routes(routes!(
            provisioned::put_provisioned_concurrency,
            provisioned::get_provisioned_concurrency,
            provisioned::delete_provisioned_concurrency
        ))
        .routes(routes!(concurrency::get_account))
        .routes(routes!(invoke::invoke, logs::list_invocations))
        .routes(routes!(logs::get_logs))
}

/// Returns the OpenAPI document of the whole API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented_routes().split_for_parts().1
}

/// Builds the authenticated API routes and the OpenAPI document that describes them.
fn api_routes(state: &AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, openapi) = documented_routes().split_for_parts();
    // Keys may contain '/', which a single path parameter cannot match, so this route
    // is added by hand; its operation is listed in `ApiDoc` instead.
    let router = router
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY_BYTES))
        .route(
            "/code-objects/{bucket}/{*key}",
            put(code_objects::put_code_object)
                .layer(DefaultBodyLimit::max(state.package_limits.max_unzipped_bytes as usize)),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::authenticate));
    (router, openapi)
}

/// Builds the whole application: the authenticated API plus `/openapi.json`, `/health`
/// and `/metrics`, with JSON errors for unknown paths and methods.
pub fn app(state: AppState) -> Router {
    let (api, openapi) = api_routes(&state);
    let openapi = Arc::new(openapi);
    Router::new()
        .route(
            "/openapi.json",
            get(move || async move { Json(openapi.as_ref().clone()) }),
        )
        .route("/health", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
        .route("/metrics", get(metrics::serve_metrics))
        .merge(api)
        .fallback(|uri: axum::http::Uri| async move {
            ApiError::NotFound(format!(
                "no API route matches the path '{}'; see GET /openapi.json",
                uri.path()
            ))
        })
        .method_not_allowed_fallback(|method: axum::http::Method, uri: axum::http::Uri| async move {
            ApiError::MethodNotAllowed(format!(
                "method {method} is not allowed on '{}'; see GET /openapi.json for the methods of each path",
                uri.path()
            ))
        })
        // Handlers log the errors that are server faults, with their ids. A 5xx that
        // the request caused, such as 502 for a runtime the server lacks, is not one.
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .on_failure(tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        .with_state(state)
}
