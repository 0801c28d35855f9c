//! Application::build(config) / port() / run_until_stopped(); `create_app` is the one place
//! routes, static assets and middleware are wired.

use std::{net::TcpListener, sync::Arc};

use crate::{
    active_learning,
    config::Config,
    jobs::pages::JobSections,
    security::RequestPolicy,
    state::{AppState, Extensions},
};
use actix_web::{
    App, HttpResponse, HttpServer,
    body::MessageBody,
    dev::{Server, ServiceRequest, ServiceResponse},
    middleware::{Next, from_fn},
    web,
};

/// Opens the state with every domain's extensions wired in (`serve`, `worker`, the tests).
pub async fn open_state(config: Config) -> anyhow::Result<AppState> {
    let ext = extensions(&config);
    AppState::open(config, ext).await
}

/// The one place the domains above the worker plug into it.
pub fn extensions(config: &Config) -> Extensions {
    let mut ext = Extensions::default();
    active_learning::extend(&mut ext);
    crate::models::extend(&mut ext, config);
    ext
}

/// The one place the domains above the jobs add to the job page.
pub fn job_sections() -> JobSections {
    JobSections(vec![active_learning::job_section()])
}

pub struct Application {
    port: u16,
    server: Server,
    state: AppState,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let state = open_state(config).await?;
        let bind = state.config.server.bind.clone();
        let listener = TcpListener::bind(&bind)
            .map_err(|e| anyhow::anyhow!("cannot listen on {bind}: {e}"))?;
        let port = listener.local_addr()?.port();
        let policy = Arc::new(RequestPolicy::new(
            &bind,
            &state.config.server.allowed_hosts,
        ));
        let server_state = state.clone();
        // One set of loaded models for every HTTP worker thread.
        let online = web::Data::new(crate::models::online::Online::new());
        let server = HttpServer::new(move || {
            create_app(server_state.clone(), policy.clone(), online.clone())
        })
        .listen(listener)?
        .workers(
            std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .min(8),
        )
        .run();
        Ok(Application {
            port,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves HTTP and runs `worker.concurrency` in-process workers until the server stops.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let _workers = self
            .state
            .workers
            .spawn(self.state.config.worker.concurrency);
        let _clusters = self.state.clusters.spawn();
        let served = self.server.await;
        self.state.clusters.close().await;
        served
    }
}

pub fn create_app(
    state: AppState,
    policy: Arc<RequestPolicy>,
    online: web::Data<crate::models::online::Online>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let json_limit = state.config.server.json_limit;
    App::new()
        .app_data(web::Data::new(state))
        .app_data(web::Data::new(job_sections()))
        .app_data(online)
        .app_data(web::Data::from(policy))
        .app_data(crate::error::json_config(json_limit))
        .app_data(crate::pages::form_config(json_limit))
        .app_data(crate::error::query_config())
        .app_data(crate::error::path_config())
        .wrap(from_fn(guard))
        .service(
            web::scope("/api")
                .configure(crate::jobs::routes::configure)
                .configure(crate::files::routes::configure)
                .configure(crate::spectra::routes::configure)
                .configure(crate::labellings::routes::configure)
                .configure(crate::active_learning::routes::configure)
                .configure(crate::clusters::routes::configure)
                .configure(crate::models::routes::configure)
                .configure(crate::accounts::routes::configure)
                .route("/openapi.json", web::get().to(crate::openapi::document))
                .route("/docs", web::get().to(crate::openapi::docs_page))
                .default_service(web::to(|| async {
                    actix_web::ResponseError::error_response(&crate::error::ApiError::NotFound(
                        "no such API endpoint".into(),
                    ))
                })),
        )
        .route("/static/{path:.*}", web::get().to(crate::assets::serve))
        .configure(crate::jobs::pages::configure)
        .configure(crate::files::pages::configure)
        .configure(crate::spectra::pages::configure)
        .configure(crate::active_learning::workspace::configure)
        .configure(crate::clusters::pages::configure)
        .configure(crate::models::pages::configure)
        .configure(crate::accounts::routes::configure_pages)
        .default_service(web::to(|| async {
            actix_web::ResponseError::error_response(&crate::pages::PageError(
                crate::error::ApiError::NotFound("no such page".into()),
            ))
        }))
}

/// SPEC §10: refuse foreign Host headers (DNS rebinding), cross-site state changes, oversized
/// headers and queries that do not decode to UTF-8, before any handler sees the request.
async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let verdict = req
        .app_data::<web::Data<RequestPolicy>>()
        .and_then(|p| p.check(req.request()));
    let refusal = match verdict {
        Some((status, message)) => Some(HttpResponse::build(status).json(
            serde_json::json!({ "code": "forbidden", "message": message, "detail": message }),
        )),
        None => crate::security::bounds(req.request())
            .err()
            .map(|e| actix_web::ResponseError::error_response(&e)),
    };
    if let Some(resp) = refusal {
        return Ok(req.into_response(resp).map_into_right_body());
    }
    // Who the request is from (SPEC §11); the handler runs as them.
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let who = match crate::auth::authenticate(&state.config, &state.db, req.request()).await {
        Ok(who) => who,
        Err(e) => {
            let resp = actix_web::ResponseError::error_response(&e);
            return Ok(req.into_response(resp).map_into_right_body());
        }
    };
    match crate::auth::gate(&state.config, who.as_ref(), req.request()) {
        Some(crate::auth::Refusal::Api(e)) => {
            let resp = actix_web::ResponseError::error_response(&e);
            Ok(req.into_response(resp).map_into_right_body())
        }
        Some(crate::auth::Refusal::Login(next)) => {
            let to = format!(
                "/login?next={}",
                percent_encoding::utf8_percent_encode(&next, percent_encoding::NON_ALPHANUMERIC)
            );
            let resp = HttpResponse::SeeOther()
                .insert_header(("Location", to))
                .finish();
            Ok(req.into_response(resp).map_into_right_body())
        }
        None => Ok(crate::auth::scoped(who, next.call(req))
            .await?
            .map_into_left_body()),
    }
}
