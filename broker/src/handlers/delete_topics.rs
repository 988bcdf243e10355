//! DeleteTopics: by name (all versions) or by topic id (v6+).

use std::rc::Rc;

use sluice_net::messages::delete_topics_response::DeletableTopicResult;
use sluice_net::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use sluice_net::{StrBytes, TopicName, Uuid};

use crate::core::Core;
use crate::errors::{self, code};
use crate::registry::TopicChange;

pub async fn handle(
    core: &Rc<Core>,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let table = core.topics();
    // (name if known, id, error before trying)
    // The id of a topic named in the request (all zeroes when unknown, as Kafka answers).
    let id_of = |name: &TopicName| {
        table
            .topics()
            .get(name.as_str())
            .map(|m| Uuid(m.id))
            .unwrap_or_default()
    };
    let mut targets: Vec<(Option<String>, Uuid, Option<i16>)> = Vec::new();
    if version >= 6 {
        for t in &request.topics {
            match (&t.name, t.topic_id) {
                (Some(name), _) => targets.push((Some(name.to_string()), id_of(name), None)),
                (None, id) => match table.by_id(&id.0) {
                    Some(m) => targets.push((Some(m.name.clone()), id, None)),
                    None => targets.push((None, id, Some(code::UNKNOWN_TOPIC_ID))),
                },
            }
        }
    } else {
        for name in &request.topic_names {
            targets.push((Some(name.to_string()), id_of(name), None));
        }
    }
    let changes: Vec<TopicChange> = targets
        .iter()
        .filter(|(_, _, err)| err.is_none())
        .filter_map(|(name, _, _)| name.clone().map(|name| TopicChange::Delete { name }))
        .collect();
    let mut outcomes = core.change_topics(changes).await.into_iter();
    let responses = targets
        .into_iter()
        .map(|(name, topic_id, err)| {
            let (error_code, error_message) = match err {
                Some(c) => (c, None),
                None => match outcomes.next() {
                    Some(Ok(())) => (code::NONE, None),
                    Some(Err(e)) => {
                        let (c, m) = errors::topic_change(&e);
                        (c, Some(StrBytes::from(m)))
                    }
                    None => (code::UNKNOWN_SERVER_ERROR, None),
                },
            };
            DeletableTopicResult {
                name: name.map(TopicName::from),
                topic_id,
                error_code,
                error_message,
                ..Default::default()
            }
        })
        .collect();
    DeleteTopicsResponse {
        responses,
        ..Default::default()
    }
}
