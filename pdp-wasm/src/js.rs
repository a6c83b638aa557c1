//! The JS face: a wasm-bindgen class `Pdp` over the same engine as the C
//! ABI. Requests are JSON strings or plain objects (objects go through
//! `JSON.stringify`, so both give the very same bytes to the engine);
//! answers are objects, or JSON strings from the `...Json` methods, which
//! are byte-identical to native pdp-core's (a worker can return them as an
//! HTTP body unchanged).

use crate::engine::{self, Failure, SearchKind};
use js_sys::{JSON, JsString, Reflect};
use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** An entity reference in Cedar's JSON form. */
export interface EntityRef { type: string; id: string }
/** May `principal` do `action` on `resource`? */
export interface Request {
  principal: EntityRef;
  action: EntityRef;
  resource: EntityRef;
  /** A Cedar JSON record. */
  context?: Record<string, unknown>;
  /** Extra entities, Cedar JSON entity format. */
  entities?: unknown[];
}
/** A request whose principal is a token's subject (the token is its own argument). */
export interface TokenRequestBody {
  action: EntityRef;
  resource: EntityRef;
  context?: Record<string, unknown>;
  entities?: unknown[];
}
/** Requests sharing a principal or a resource (at most 100). */
export interface BatchRequest { requests: Request[]; entities?: unknown[] }
export type Decision = "Allow" | "Deny";
export interface PolicyError { policy_id: string; message: string }
export interface Answer {
  decision: Decision;
  determining_policies: string[];
  errors: PolicyError[];
  /** `permit`, `no_permit`, `forbid:<id>`, `user_state:<State>`, `unknown_user`, `token:<why>` */
  reason: string;
  revision: number;
}
export interface BatchAnswer { results: Tagged<Answer>[] }
export interface FailureDetail { kind: string; message: string }
export interface Failure { type: "failure"; errors: FailureDetail[] }
/** Every answer is tagged. */
export type Tagged<T> = ({ type: "success" } & T) | Failure;
export interface Loaded { realm: string; revision: number; signed_by: string | null }
export interface UserRecord {
  id: string; username: string; email: string; state: string;
  groups: string[]; roles: string[]; attrs: Record<string, unknown>;
  tokens_valid_after: number; updated_at: number;
}
/** Which page of a search: at most `limit` results (default 100, at most 1000), resuming at `token` (the previous page's `next_token`). */
export interface Page { limit?: number; token?: string }
/** Which entities of `resource_type` may `principal` do `action` on? */
export interface ResourceSearch {
  principal: EntityRef;
  action: EntityRef;
  resource_type: string;
  context?: Record<string, unknown>;
  page?: Page;
}
/** Which entities of `subject_type` may do `action` on `resource`? (Users only when Active.) */
export interface SubjectSearch {
  subject_type: string;
  action: EntityRef;
  resource: EntityRef;
  context?: Record<string, unknown>;
  page?: Page;
}
/** Which actions may `principal` take on `resource`? */
export interface ActionSearch {
  principal: EntityRef;
  resource: EntityRef;
  context?: Record<string, unknown>;
  page?: Page;
}
/** One page of a search: exactly the entities `isAuthorized` allows, in id order. */
export interface Found {
  results: EntityRef[];
  /** Give it as `page.token` (same query) for the next page; absent on the last one. */
  next_token?: string;
  revision: number;
}
export interface Limits { archive?: number; manifest?: number; member?: number; users?: number }
export interface Jwk { kty: "OKP"; crv: "Ed25519"; x: string; kid?: string }
export interface LoadOptions {
  /** Accept unsigned bundles (development only; ignored when keys are given). */
  dev?: boolean;
  /** Trusted bundle-signing public keys, SPKI PEM. */
  trust_keys?: string[];
  trustKeys?: string[];
  /** Trusted bundle-signing keys as a JWKS. */
  jwks?: { keys: Jwk[] };
  /** The realm served: the keys then sign bundles of that realm only. */
  realm?: string;
  limits?: Limits;
  /** Largest request accepted, bytes (default 1 MiB). */
  max_request_bytes?: number;
  maxRequestBytes?: number;
}
"#;

/// A loaded decision point.
#[wasm_bindgen]
pub struct Pdp {
    inner: engine::Pdp,
}

/// JSON bytes of a request given as a string or an object, or a failure.
/// A string longer (in UTF-16 units, never more than its UTF-8 bytes) than
/// `max` is refused before it is copied into the module.
fn json_bytes(value: &JsValue, max: Option<&engine::Pdp>) -> Result<Vec<u8>, Failure> {
    let text: JsString = if value.is_string() {
        value.clone().unchecked_into()
    } else if value.is_undefined() || value.is_function() || value.is_symbol() {
        return Err(Failure::new(
            "invalid_json",
            "expected a JSON string or an object",
        ));
    } else {
        match JSON::stringify(value) {
            Ok(s) => s,
            Err(e) => {
                return Err(Failure::new(
                    "invalid_json",
                    format!("JSON.stringify: {}", describe(&e)),
                ));
            }
        }
    };
    if let Some(pdp) = max {
        pdp.check_size(u64::from(text.length()))?;
    }
    Ok(String::from(text).into_bytes())
}

fn describe(e: &JsValue) -> String {
    e.as_string()
        .or_else(|| {
            e.dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.message()))
        })
        .unwrap_or_else(|| "not serializable".into())
}

/// An answer string as an object (our JSON always parses; if it somehow
/// did not, the caller still gets a failure object).
fn object(json: &str) -> JsValue {
    JSON::parse(json)
        .or_else(|_| JSON::parse(&Failure::new("internal", "answer is not JSON").to_json()))
        .unwrap_or(JsValue::NULL)
}

/// Host time in whole seconds, or a failure for NaN and infinities.
fn seconds(now: f64) -> Result<i64, Failure> {
    if now.is_finite() {
        // Saturating float-to-int conversion: far past or future clamps.
        Ok(now.floor() as i64)
    } else {
        Err(Failure::new(
            "invalid_request",
            "nowSeconds must be a finite number",
        ))
    }
}

impl Pdp {
    /// A search of `kind` over a query given as a string or an object.
    fn search(&self, kind: SearchKind, query: &JsValue) -> String {
        match json_bytes(query, Some(&self.inner)) {
            Ok(b) => self.inner.search(kind, &b),
            Err(f) => f.to_json(),
        }
    }
}

#[wasm_bindgen]
impl Pdp {
    /// Load a bundle. Answers `{type: "success", pdp, realm, revision,
    /// signed_by}` or a tagged failure; never throws.
    #[wasm_bindgen(unchecked_return_type = "Tagged<Loaded & { pdp: Pdp }>")]
    pub fn load(
        bytes: &[u8],
        #[wasm_bindgen(unchecked_optional_param_type = "LoadOptions | string")] options: Option<
            JsValue,
        >,
    ) -> JsValue {
        let options = match options {
            Some(o) if !o.is_undefined() && !o.is_null() => json_bytes(&o, None),
            _ => Ok(Vec::new()),
        };
        let result = options.and_then(|o| engine::Pdp::load(bytes, &o));
        match result {
            Err(f) => object(&f.to_json()),
            Ok(inner) => {
                let answer = object(&engine::loaded_json(Ok(inner.loaded(None))));
                let pdp = JsValue::from(Pdp { inner });
                match Reflect::set(&answer, &JsValue::from_str("pdp"), &pdp) {
                    Ok(true) => answer,
                    _ => object(&Failure::new("internal", "could not build the answer").to_json()),
                }
            }
        }
    }

    /// Apply a delta (or a newer snapshot). Answers `{type: "success",
    /// realm, revision, signed_by}` or a tagged failure, after which the
    /// held snapshot keeps answering.
    #[wasm_bindgen(js_name = applyDelta, unchecked_return_type = "Tagged<Loaded>")]
    pub fn apply_delta(&mut self, bytes: &[u8]) -> JsValue {
        let result = self.inner.update(bytes).map(|()| self.inner.loaded(None));
        object(&engine::loaded_json(result))
    }

    /// Decide one request.
    #[wasm_bindgen(js_name = isAuthorized, unchecked_return_type = "Tagged<Answer>")]
    pub fn is_authorized(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Request | string")] request: JsValue,
    ) -> JsValue {
        object(&self.is_authorized_json(request))
    }

    /// [`Pdp::is_authorized`], answering the JSON string native pdp-core gives.
    #[wasm_bindgen(js_name = isAuthorizedJson)]
    pub fn is_authorized_json(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Request | string")] request: JsValue,
    ) -> String {
        match json_bytes(&request, Some(&self.inner)) {
            Ok(b) => self.inner.is_authorized(&b),
            Err(f) => f.to_json(),
        }
    }

    /// Decide for the subject of `token` (a JWT, verified at host time
    /// `nowSeconds`); `request` has no principal and no token.
    #[wasm_bindgen(js_name = isAuthorizedWithToken, unchecked_return_type = "Tagged<Answer>")]
    pub fn is_authorized_with_token(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] token: JsValue,
        #[wasm_bindgen(unchecked_param_type = "TokenRequestBody | string")] request: JsValue,
        #[wasm_bindgen(js_name = nowSeconds)] now_seconds: f64,
    ) -> JsValue {
        object(&self.is_authorized_with_token_json(token, request, now_seconds))
    }

    /// [`Pdp::is_authorized_with_token`], answering a JSON string.
    #[wasm_bindgen(js_name = isAuthorizedWithTokenJson)]
    pub fn is_authorized_with_token_json(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] token: JsValue,
        #[wasm_bindgen(unchecked_param_type = "TokenRequestBody | string")] request: JsValue,
        #[wasm_bindgen(js_name = nowSeconds)] now_seconds: f64,
    ) -> String {
        let run = || -> Result<String, Failure> {
            let token: JsString = token
                .dyn_into()
                .map_err(|_| Failure::new("invalid_request", "token must be a string"))?;
            self.inner.check_size(u64::from(token.length()))?;
            let now = seconds(now_seconds)?;
            let body = json_bytes(&request, Some(&self.inner))?;
            Ok(self
                .inner
                .is_authorized_with_token_parts(&String::from(token), &body, now))
        };
        run().unwrap_or_else(|f| f.to_json())
    }

    /// Decide a batch of requests sharing a principal or a resource.
    #[wasm_bindgen(js_name = batchIsAuthorized, unchecked_return_type = "Tagged<BatchAnswer>")]
    pub fn batch_is_authorized(
        &self,
        #[wasm_bindgen(unchecked_param_type = "BatchRequest | string")] batch: JsValue,
    ) -> JsValue {
        object(&self.batch_is_authorized_json(batch))
    }

    /// [`Pdp::batch_is_authorized`], answering a JSON string.
    #[wasm_bindgen(js_name = batchIsAuthorizedJson)]
    pub fn batch_is_authorized_json(
        &self,
        #[wasm_bindgen(unchecked_param_type = "BatchRequest | string")] batch: JsValue,
    ) -> String {
        match json_bytes(&batch, Some(&self.inner)) {
            Ok(b) => self.inner.batch_is_authorized(&b),
            Err(f) => f.to_json(),
        }
    }

    /// Which resources of a type may a principal act on: one page.
    #[wasm_bindgen(js_name = searchResources, unchecked_return_type = "Tagged<Found>")]
    pub fn search_resources(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ResourceSearch | string")] query: JsValue,
    ) -> JsValue {
        object(&self.search(SearchKind::Resource, &query))
    }

    /// [`Pdp::search_resources`], answering the JSON string `pdp search
    /// resource` prints.
    #[wasm_bindgen(js_name = searchResourcesJson)]
    pub fn search_resources_json(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ResourceSearch | string")] query: JsValue,
    ) -> String {
        self.search(SearchKind::Resource, &query)
    }

    /// Which subjects of a type may act on a resource: one page.
    #[wasm_bindgen(js_name = searchSubjects, unchecked_return_type = "Tagged<Found>")]
    pub fn search_subjects(
        &self,
        #[wasm_bindgen(unchecked_param_type = "SubjectSearch | string")] query: JsValue,
    ) -> JsValue {
        object(&self.search(SearchKind::Subject, &query))
    }

    /// [`Pdp::search_subjects`], answering a JSON string.
    #[wasm_bindgen(js_name = searchSubjectsJson)]
    pub fn search_subjects_json(
        &self,
        #[wasm_bindgen(unchecked_param_type = "SubjectSearch | string")] query: JsValue,
    ) -> String {
        self.search(SearchKind::Subject, &query)
    }

    /// Which actions may a principal take on a resource: one page.
    #[wasm_bindgen(js_name = searchActions, unchecked_return_type = "Tagged<Found>")]
    pub fn search_actions(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ActionSearch | string")] query: JsValue,
    ) -> JsValue {
        object(&self.search(SearchKind::Action, &query))
    }

    /// [`Pdp::search_actions`], answering a JSON string.
    #[wasm_bindgen(js_name = searchActionsJson)]
    pub fn search_actions_json(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ActionSearch | string")] query: JsValue,
    ) -> String {
        self.search(SearchKind::Action, &query)
    }

    /// The bundle revision held.
    pub fn revision(&self) -> f64 {
        // Revisions are far below 2^53; a JS number holds them exactly.
        self.inner.revision() as f64
    }

    /// A user's directory record: `{type: "success", user}` (`user` is
    /// `null` when absent).
    #[wasm_bindgen(unchecked_return_type = "Tagged<{ user: UserRecord | null }>")]
    pub fn user(&self, #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue) -> JsValue {
        let run = || -> Result<String, Failure> {
            let id: JsString = id
                .dyn_into()
                .map_err(|_| Failure::new("invalid_request", "user id must be a string"))?;
            self.inner.check_size(u64::from(id.length()))?;
            Ok(self.inner.user(&String::from(id)))
        };
        object(&run().unwrap_or_else(|f| f.to_json()))
    }
}
