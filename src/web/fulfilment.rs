//! The member's access to their data (R7): `/account/privacy/export` builds the archive and
//! shows its single-use link, `/privacy/export/{token}` hands it out once, and
//! `POST /api/v1/me/export` does the same for API clients. The archive itself is built by
//! `crate::fulfilment`; this module only knows the forms, the JSON and the download response.

use crate::error::Error;
use crate::fulfilment::{EXPORT_LINK_SECONDS, ExportLink};
use crate::web::AppState;
use crate::web::auth::{Viewer, check_form};
use crate::web::error::{ApiErrorBody, ApiResult, PageResult};
use crate::web::forms::{Form, Json};
use crate::web::pages::{Layout, date, page, see_other};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use covenant_core::policy::Jurisdiction;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

struct JurisdictionOption {
    id: &'static str,
    name: String,
}

#[derive(Template)]
#[template(path = "account/export.html")]
struct ExportPage {
    layout: Layout,
    jurisdictions: Vec<JurisdictionOption>,
    link: Option<String>,
    expires: String,
    hours: i64,
}

async fn export_page(
    state: &AppState,
    viewer: &Viewer,
    link: Option<ExportLink>,
) -> Result<ExportPage, Error> {
    let policy = state.policy.current().await?;
    let jurisdictions = Jurisdiction::ALL
        .iter()
        .map(|j| JurisdictionOption {
            id: j.as_str(),
            name: policy.policy.jurisdiction(*j).name.clone(),
        })
        .collect();
    Ok(ExportPage {
        layout: Layout::new(state, viewer, "Download your data"),
        jurisdictions,
        expires: link
            .as_ref()
            .map(|l| date(l.expires_at))
            .unwrap_or_default(),
        link: link.map(|l| format!("{}{}", state.config.base_url(), l.path)),
        hours: EXPORT_LINK_SECONDS / 3600,
    })
}

/// `GET /account/privacy/export`.
pub async fn export_form(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    if viewer.0.is_none() {
        return Ok(see_other("/sign-in"));
    }
    page(&export_page(&state, &viewer, None).await?)
}

#[derive(Deserialize)]
pub struct ExportForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    jurisdiction: String,
}

fn parse_jurisdiction(text: &str) -> Result<Jurisdiction, Error> {
    if text.trim().is_empty() {
        return Ok(Jurisdiction::Other);
    }
    text.trim()
        .parse()
        .map_err(|_| Error::BadRequest("unknown jurisdiction".into()))
}

async fn export_for(
    state: &AppState,
    user_id: i64,
    jurisdiction: Jurisdiction,
) -> Result<ExportLink, Error> {
    let in_force = state.policy.current().await?;
    state
        .fulfilment
        .export_subject(
            &in_force.policy,
            in_force.version.as_ref().map(|v| v.label.as_str()),
            user_id,
            jurisdiction,
            Some(user_id),
        )
        .await
}

/// `POST /account/privacy/export`: builds the archive and shows its link.
pub async fn export(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<ExportForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let signed_in = viewer.require()?;
    state.accounts.require_recent_sign_in(&signed_in.user)?;
    let jurisdiction = parse_jurisdiction(&form.jurisdiction)?;
    let link = export_for(&state, signed_in.user.user_id, jurisdiction).await?;
    page(&export_page(&state, &viewer, Some(link)).await?)
}

/// `GET /privacy/export/{token}`: the archive, once.
pub async fn download(State(state): State<AppState>, Path(token): Path<String>) -> PageResult {
    let bytes = state.fulfilment.download(&token).await?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/zip"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"my-forum-data.zip\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        bytes,
    )
        .into_response())
}

#[derive(Deserialize, ToSchema)]
pub struct ExportRequest {
    /// The jurisdiction whose right-to-know answer the manifest carries (`eu_eea`,
    /// `california`, …); `other` when absent.
    #[serde(default)]
    jurisdiction: String,
}

#[derive(Serialize, ToSchema)]
pub struct ExportCreated {
    /// A single-use link to the ZIP archive; it needs no authentication.
    url: String,
    /// When the link stops working (epoch seconds); the archive is deleted then.
    expires_at: i64,
}

/// Build an archive of all your data (JSON and CSV per category, with the right-to-know
/// manifest) and get a single-use download link.
#[utoipa::path(post, path = "/api/v1/me/export", request_body = ExportRequest,
    responses((status = 201, body = ExportCreated), (status = 400, body = ApiErrorBody), (status = 401, body = ApiErrorBody), (status = 403, body = ApiErrorBody)))]
pub async fn api_export(
    State(state): State<AppState>,
    viewer: Viewer,
    Json(body): Json<ExportRequest>,
) -> ApiResult<Response> {
    let signed_in = viewer.require()?;
    state.accounts.require_recent_sign_in(&signed_in.user)?;
    let jurisdiction = parse_jurisdiction(&body.jurisdiction)?;
    let link = export_for(&state, signed_in.user.user_id, jurisdiction).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(ExportCreated {
            url: format!("{}{}", state.config.base_url(), link.path),
            expires_at: link.expires_at,
        }),
    )
        .into_response())
}
