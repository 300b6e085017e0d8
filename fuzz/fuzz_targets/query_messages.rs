//! Query protocol messages (`model::query`): a message's bytes parsed as the provider reads a
//! `/yrd/query/2` batch (a JSON array of any values, each then parsed as a `Query` and its form
//! checked) and as the caller reads a `QueryResponse` or `QueryBatchResponse`. Properties: no
//! panic; `compact_json_len` is exactly the length of the compact JSON the codec writes, so a
//! query or answer inside a batch keeps the bound it has alone; a parsed message written again
//! parses to the same message; a query's digest is the same for the query read again; an
//! answer's signature check and its result digest never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use yrd_node::model::query::{
    MAX_QUERY_BATCH_BYTES, Query, QueryBatchResponse, QueryResponse, compact_json_len,
    result_digest,
};

fuzz_target!(|data: &[u8]| {
    // Inputs beyond the codec's limit are refused before they are parsed.
    if data.len() as u64 > MAX_QUERY_BATCH_BYTES {
        return;
    }
    if let Ok(batch) = serde_json::from_slice::<Vec<Value>>(data) {
        for raw in &batch {
            check_query(raw);
        }
    }
    if let Ok(raw) = serde_json::from_slice::<Value>(data) {
        check_query(&raw);
    }
    if let Ok(response) = serde_json::from_slice::<QueryResponse>(data) {
        check_response(&response);
    }
    if let Ok(batch) = serde_json::from_slice::<QueryBatchResponse>(data) {
        let again = serde_json::to_vec(&batch).unwrap();
        assert_eq!(compact_json_len(&batch), again.len() as u64);
        assert_eq!(
            serde_json::from_slice::<QueryBatchResponse>(&again).unwrap(),
            batch
        );
        if let QueryBatchResponse::Responses { responses } = &batch {
            responses.iter().for_each(check_response);
        }
    }
});

/// One query of a batch, as the provider reads it (`answer_raw`).
fn check_query(raw: &Value) {
    let written = serde_json::to_vec(raw).unwrap();
    assert_eq!(compact_json_len(raw), written.len() as u64);
    let Ok(query) = serde_json::from_value::<Query>(raw.clone()) else {
        return;
    };
    let _ = query.check_form();
    let again = serde_json::to_vec(&query).unwrap();
    let reread: Query = serde_json::from_slice(&again).unwrap();
    assert_eq!(reread, query);
    match (query.digest(), reread.digest()) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("digest differs for the same query: {a:?} vs {b:?}"),
    }
}

fn check_response(response: &QueryResponse) {
    let again = serde_json::to_vec(response).unwrap();
    assert_eq!(compact_json_len(response), again.len() as u64);
    assert_eq!(
        &serde_json::from_slice::<QueryResponse>(&again).unwrap(),
        response
    );
    if let QueryResponse::Answer { answer, records } = response {
        let _ = answer.verify();
        let _ = answer.signer_key();
        let _ = result_digest(records);
    }
}
