//! Amazon S3 or an S3-compatible service. SDK types stay in this file.

use crate::key::{validate_key, validate_prefix};
use crate::{BoxFuture, Condition, Connect, Fetched, ObjectStore, Put, StoreError, join};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;

/// A bucket (and a prefix in it) as an object store.
///
/// Create-only writes send `If-None-Match: *`, compare-and-swap sends
/// `If-Match`; S3's 412 (and its 409 `ConditionalRequestConflict` when
/// another conditional write of the key is in flight) are
/// [`Put::PreconditionFailed`]. Bodies are sent from memory, so the SDK can
/// retry them: failures that may pass (5xx, throttling, connections) are
/// retried with exponential backoff up to [`Connect::max_attempts`].
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl S3Store {
    /// A store on `bucket` rooted at `prefix` (`""`: the whole bucket).
    /// Credentials and region come from the standard AWS chain
    /// (environment, profiles, roles); the endpoint from
    /// [`Connect::endpoint`] or that chain (`AWS_ENDPOINT_URL`). Sends no
    /// request.
    pub async fn connect(
        bucket: &str,
        prefix: &str,
        connect: &Connect,
    ) -> Result<S3Store, StoreError> {
        let prefix = prefix.trim_matches('/');
        if bucket.is_empty() || bucket.contains('/') {
            return Err(StoreError::BadLocation(format!("s3://{bucket}: no bucket")));
        }
        validate_prefix(prefix)?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_timeout(connect.timeout)
                    .build(),
            )
            .retry_config(
                aws_config::retry::RetryConfig::standard()
                    .with_max_attempts(connect.max_attempts.max(1)),
            );
        if let Some(endpoint) = &connect.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let shared = loader.load().await;
        let config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(connect.s3_force_path_style)
            .build();
        Ok(S3Store {
            client: aws_sdk_s3::Client::from_conf(config),
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    /// The object key in the bucket of a store key.
    fn full(&self, key: &str) -> String {
        join(&self.prefix, key)
    }
}

/// What a failed SDK call amounts to: a status from the service, or no
/// answer at all.
enum Failure {
    Status { status: u16, message: String },
    Unreachable(String),
    Other(String),
}

fn failure<E>(e: SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match &e {
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            Failure::Status {
                status,
                message: format!("{status} {}", s.err().code().unwrap_or("error")),
            }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            Failure::Unreachable(DisplayErrorContext(&e).to_string())
        }
        _ => Failure::Other(DisplayErrorContext(&e).to_string()),
    }
}

fn refused(key: &str, failure: Failure) -> StoreError {
    match failure {
        Failure::Status { message, .. } | Failure::Other(message) => StoreError::Refused {
            key: key.to_owned(),
            message,
        },
        Failure::Unreachable(message) => StoreError::Unreachable(message),
    }
}

impl ObjectStore for S3Store {
    fn get<'a>(
        &'a self,
        key: &'a str,
        if_none_match: Option<&'a str>,
        limit: u64,
    ) -> BoxFuture<'a, Result<Fetched, StoreError>> {
        Box::pin(async move {
            validate_key(key)?;
            let sent = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(self.full(key))
                .set_if_none_match(if_none_match.map(str::to_owned))
                .send()
                .await;
            let out = match sent {
                Ok(out) => out,
                Err(e) => {
                    let no_such_key =
                        matches!(&e, SdkError::ServiceError(s) if s.err().is_no_such_key());
                    return match failure(e) {
                        Failure::Status { status: 304, .. } => Ok(Fetched::NotModified),
                        Failure::Status { status: 404, .. } => Ok(Fetched::Missing),
                        _ if no_such_key => Ok(Fetched::Missing),
                        f => Err(refused(key, f)),
                    };
                }
            };
            let too_large = || StoreError::TooLarge {
                key: key.to_owned(),
                limit,
            };
            if out
                .content_length()
                .is_some_and(|n| u64::try_from(n).unwrap_or(u64::MAX) > limit)
            {
                return Err(too_large());
            }
            let etag = out.e_tag().map(str::to_owned);
            let mut body = out.body;
            let mut bytes = Vec::new();
            while let Some(chunk) = body
                .try_next()
                .await
                .map_err(|e| StoreError::Unreachable(DisplayErrorContext(&e).to_string()))?
            {
                if (bytes.len() + chunk.len()) as u64 > limit {
                    return Err(too_large());
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(Fetched::Found { bytes, etag })
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: &'a [u8],
        condition: Condition,
    ) -> BoxFuture<'a, Result<Put, StoreError>> {
        Box::pin(async move {
            validate_key(key)?;
            // S3 tags are quoted. Anything else (`*`, which HTTP reads as
            // "any", or an empty value that might not be sent at all) never
            // matches here, as on every other store.
            if let Condition::IfMatch(etag) = &condition {
                let quoted = etag.len() >= 2 && etag.starts_with('"') && etag.ends_with('"');
                if !quoted || etag.contains('*') {
                    return Ok(Put::PreconditionFailed);
                }
            }
            let request = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(self.full(key))
                .body(ByteStream::from(bytes.to_vec()));
            let conditional = condition != Condition::None;
            let request = match &condition {
                Condition::None => request,
                Condition::IfAbsent => request.if_none_match("*"),
                Condition::IfMatch(etag) => request.if_match(etag),
            };
            match request.send().await {
                Ok(out) => match out.e_tag() {
                    Some(etag) => Ok(Put::Written(etag.to_owned())),
                    None => Err(StoreError::Refused {
                        key: key.to_owned(),
                        message: "written, but the answer has no ETag".into(),
                    }),
                },
                Err(e) => match failure(e) {
                    Failure::Status { status: 412, .. } => Ok(Put::PreconditionFailed),
                    // Another conditional write of the key was in flight.
                    Failure::Status { status: 409, .. } if conditional => {
                        Ok(Put::PreconditionFailed)
                    }
                    // If-Match on a key that has no object.
                    Failure::Status { status: 404, .. }
                        if matches!(condition, Condition::IfMatch(_)) =>
                    {
                        Ok(Put::PreconditionFailed)
                    }
                    f => Err(refused(key, f)),
                },
            }
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            validate_prefix(prefix)?;
            let folder = self.full(prefix);
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .set_prefix((!folder.is_empty()).then(|| format!("{folder}/")))
                .into_paginator()
                .send();
            let root = match self.prefix.is_empty() {
                true => String::new(),
                false => format!("{}/", self.prefix),
            };
            let mut keys = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| refused(prefix, failure(e)))?;
                for object in page.contents() {
                    let Some(key) = object.key().and_then(|k| k.strip_prefix(root.as_str())) else {
                        continue;
                    };
                    // Keys this crate could not address are left out.
                    if validate_key(key).is_ok() {
                        keys.push(key.to_owned());
                    }
                }
            }
            keys.sort();
            Ok(keys)
        })
    }

    fn describe(&self) -> String {
        format!("s3://{}", join(&self.bucket, &self.prefix))
    }
}
