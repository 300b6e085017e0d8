//! The OpenAPI 3.1 document of the admin API. It is built by the same calls that register the
//! routes ([`ApiBuilder::route`]), so the document cannot name a route that does not exist or
//! miss one that does; the schemas come from the Rust types (schemars, JSON Schema 2020-12,
//! which OpenAPI 3.1 uses as is).

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::routing::{MethodFilter, on};
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};

use super::{ApiErrorBody, ApiState};

/// axum's default limit on a request body.
const DEFAULT_BODY_LIMIT: usize = 2 << 20;

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// How one response of an operation looks.
#[derive(Debug, Clone, Copy)]
enum Body {
    /// JSON of a Rust type.
    Json(SchemaFn),
    /// Another media type, described in words.
    Raw(&'static str),
}

/// The documentation of one operation, given where its route is registered.
#[derive(Debug, Clone)]
pub(super) struct Doc {
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
    cli: Option<&'static str>,
    query: Option<SchemaFn>,
    body: Option<SchemaFn>,
    int_params: &'static [&'static str],
    response: (u16, Body),
    body_limit: Option<usize>,
    extra_errors: &'static [(u16, &'static str)],
}

impl Doc {
    /// An operation `id` in group `tag` that answers 200 with JSON of `T`.
    pub(super) fn new<T: JsonSchema>(
        id: &'static str,
        tag: &'static str,
        summary: &'static str,
    ) -> Doc {
        Doc {
            id,
            tag,
            summary,
            cli: None,
            query: None,
            body: None,
            int_params: &[],
            response: (200, Body::Json(|g| g.subschema_for::<T>())),
            body_limit: None,
            extra_errors: &[],
        }
    }

    /// The CLI verb that calls this operation.
    pub(super) fn cli(mut self, verb: &'static str) -> Doc {
        self.cli = Some(verb);
        self
    }

    /// Query parameters: the fields of `Q`.
    pub(super) fn query<Q: JsonSchema>(mut self) -> Doc {
        self.query = Some(|g| g.root_schema_for::<Q>());
        self
    }

    /// A JSON request body of type `B`.
    pub(super) fn body<B: JsonSchema>(mut self) -> Doc {
        self.body = Some(|g| g.subschema_for::<B>());
        self
    }

    /// A larger request body than the default 2 MiB (evidence bundles).
    pub(super) fn body_limit(mut self, bytes: usize) -> Doc {
        self.body_limit = Some(bytes);
        self
    }

    /// Error answers particular to this operation: (status, response component).
    pub(super) fn errors(mut self, errors: &'static [(u16, &'static str)]) -> Doc {
        self.extra_errors = errors;
        self
    }

    /// Path parameters that are integers (the others are strings).
    pub(super) fn int_params(mut self, names: &'static [&'static str]) -> Doc {
        self.int_params = names;
        self
    }

    /// Success status other than 200 (201 created, 202 accepted).
    pub(super) fn status(mut self, status: u16) -> Doc {
        self.response.0 = status;
        self
    }

    /// The success body is not JSON but `media_type` (several: comma-separated).
    pub(super) fn raw(mut self, media_type: &'static str) -> Doc {
        self.response.1 = Body::Raw(media_type);
        self
    }
}

/// Registers routes and documents them in one step.
pub(super) struct ApiBuilder {
    router: Router<ApiState>,
    generator: SchemaGenerator,
    paths: Map<String, Value>,
}

impl std::fmt::Debug for ApiBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiBuilder")
            .field("paths", &self.paths.len())
            .finish()
    }
}

fn settings() -> SchemaSettings {
    SchemaSettings::draft2020_12().with(|s| {
        s.definitions_path = "/components/schemas".into();
        s.meta_schema = None;
    })
}

impl ApiBuilder {
    pub(super) fn new() -> ApiBuilder {
        ApiBuilder {
            router: Router::new(),
            generator: settings().into_generator(),
            paths: Map::new(),
        }
    }

    /// Adds `handler` at `method path` and its operation to the document.
    pub(super) fn route<H, T>(
        mut self,
        method: MethodFilter,
        path: &'static str,
        handler: H,
        doc: Doc,
    ) -> ApiBuilder
    where
        H: Handler<T, ApiState>,
        T: 'static,
    {
        let mut method_router = on(method, handler);
        if let Some(limit) = doc.body_limit {
            method_router = method_router.layer(DefaultBodyLimit::max(limit));
        }
        self.router = self.router.route(path, method_router);
        let operation = self.operation(path, &doc);
        let method_name = method_name(method);
        let item = self
            .paths
            .entry(path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(item) = item {
            item.insert(method_name.to_string(), operation);
        }
        self
    }

    fn operation(&mut self, path: &str, doc: &Doc) -> Value {
        let mut parameters = Vec::new();
        for name in path_params(path) {
            let kind = if doc.int_params.contains(&name) {
                json!({"type": "integer", "minimum": 0})
            } else {
                json!({"type": "string"})
            };
            parameters.push(json!({"name": name, "in": "path", "required": true, "schema": kind}));
        }
        if let Some(query) = doc.query {
            parameters.extend(query_params(&query(&mut self.generator)));
        }
        let mut op = Map::new();
        op.insert("operationId".into(), json!(doc.id));
        op.insert("tags".into(), json!([doc.tag]));
        op.insert("summary".into(), json!(doc.summary));
        if let Some(cli) = doc.cli {
            op.insert("x-yrd-cli".into(), json!(cli));
        }
        if !parameters.is_empty() {
            op.insert("parameters".into(), Value::Array(parameters));
        }
        if let Some(body) = doc.body {
            let schema = body(&mut self.generator);
            let limit = doc.body_limit.unwrap_or(DEFAULT_BODY_LIMIT);
            op.insert(
                "requestBody".into(),
                json!({"required": true,
                       "description": format!("JSON, at most {} MiB", limit >> 20),
                       "content": {"application/json": {"schema": schema}}}),
            );
        }
        let success = match doc.response.1 {
            Body::Json(schema) => {
                let schema = schema(&mut self.generator);
                json!({"description": status_text(doc.response.0),
                       "content": {"application/json": {"schema": schema}}})
            }
            Body::Raw(media) => {
                let content: Map<String, Value> = media
                    .split(',')
                    .map(|m| (m.trim().to_string(), json!({})))
                    .collect();
                json!({"description": status_text(doc.response.0), "content": content})
            }
        };
        let mut responses = Map::new();
        responses.insert(doc.response.0.to_string(), success);
        let has_input = doc.body.is_some() || doc.query.is_some() || !path_params(path).is_empty();
        if has_input {
            responses.insert("400".into(), error_ref("BadRequest"));
        }
        responses.insert("401".into(), error_ref("Unauthorized"));
        if doc.body.is_some() {
            responses.insert("413".into(), error_ref("TooLarge"));
            responses.insert("415".into(), error_ref("UnsupportedMediaType"));
        }
        for &(status, name) in doc.extra_errors {
            responses.insert(status.to_string(), error_ref(name));
        }
        if !path_params(path).is_empty() {
            responses.insert("404".into(), error_ref("NotFound"));
        }
        responses.insert("default".into(), error_ref("Error"));
        op.insert("responses".into(), Value::Object(responses));
        Value::Object(op)
    }

    /// The router and the OpenAPI document of its routes.
    pub(super) fn finish(mut self) -> (Router<ApiState>, Value) {
        let error = self.generator.subschema_for::<ApiErrorBody>();
        let mut schemas = self.generator.take_definitions(true);
        schemas.sort_keys();
        let mut paths = self.paths;
        paths.sort_keys();
        let response = |description: &str| {
            json!({"description": description,
                   "content": {"application/json": {"schema": error.clone()}}})
        };
        let doc = json!({
            "openapi": "3.1.0",
            "info": {
                "title": "YRD Node admin API",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "The admin API of a YRD Node: every verb of the `yrd` command line \
                    that talks to a running node (`x-yrd-cli` names it). Every route needs the \
                    node's admin token as `Authorization: Bearer TOKEN`. Errors are always \
                    `{\"error\": code, \"message\": text}`. See docs/api.md.",
                "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}
            },
            "security": [{"bearer": []}],
            "paths": paths,
            "components": {
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer",
                               "description": "The admin token (the data dir's `api.token`)."}
                },
                "responses": {
                    "BadRequest": response("The input is invalid; the message names the field \
                        and the rule (`bad-request`)."),
                    "TooLarge": response("The body is over the limit (`too-large`)."),
                    "UnsupportedMediaType": response("A JSON body was sent without \
                        `content-type: application/json` (`unsupported-media-type`)."),
                    "InvalidEvidence": response("The evidence bundle does not verify; the \
                        message says why (`invalid-evidence`)."),
                    "Unauthorized": response("Missing or wrong bearer token (`unauthorized`)."),
                    "NotFound": response("No such thing (`not-found`)."),
                    "Error": response("`conflict` (409), `peer` (502: a peer failed or \
                        refused), `not-found` (404), `method-not-allowed` (405) or `internal` \
                        (500).")
                },
                "schemas": schemas
            }
        });
        (self.router, doc)
    }
}

fn error_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/responses/{name}")})
}

fn status_text(status: u16) -> &'static str {
    match status {
        201 => "Created",
        202 => "Accepted: the work goes on in the background",
        _ => "OK",
    }
}

fn method_name(method: MethodFilter) -> &'static str {
    if method == MethodFilter::POST {
        "post"
    } else if method == MethodFilter::DELETE {
        "delete"
    } else if method == MethodFilter::PUT {
        "put"
    } else {
        "get"
    }
}

fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

/// One OpenAPI parameter per property of a query struct's (root) schema.
fn query_params(schema: &Schema) -> Vec<Value> {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    properties
        .iter()
        .map(|(name, prop)| {
            let mut prop = prop.clone();
            let description = prop
                .as_object_mut()
                .and_then(|p| p.remove("description"))
                .unwrap_or(Value::Null);
            let mut param = json!({
                "name": name,
                "in": "query",
                "required": required.contains(&name.as_str()),
                "schema": prop,
            });
            if let (Value::Object(p), Value::String(_)) = (&mut param, &description) {
                p.insert("description".into(), description);
            }
            param
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_params_are_the_braced_segments() {
        assert_eq!(path_params("/api/v1/requests/{id}/approve"), vec!["id"]);
        assert!(path_params("/api/v1/node").is_empty());
    }
}
