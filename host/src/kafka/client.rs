//! librdkafka client configuration: Weft's settings, the user's pass-through properties on top, and
//! the few properties Weft's delivery guarantees depend on forced last.

use rdkafka::ClientConfig;

use crate::config::KafkaConfig;

/// Consumer settings. Offsets are stored by Weft only once an event is finished
/// (`enable.auto.offset.store=false`) and committed in the background and on revocation/shutdown.
pub fn consumer_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("auto.offset.reset", "earliest")
        .set("auto.commit.interval.ms", "1000")
        .set("fetch.wait.max.ms", "100")
        .set("statistics.interval.ms", "5000")
        .set("client.id", "weft");
    for (key, value) in kafka.properties.iter().chain(&kafka.consumer) {
        config.set(key, value);
    }
    config
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", &kafka.group_id)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false");
    config
}

/// Producer settings for events that plugins emit. Idempotent with `acks=all` so a retried send
/// neither duplicates nor reorders within a partition.
pub fn producer_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .set("client.id", "weft");
    for (key, value) in kafka.properties.iter().chain(&kafka.producer) {
        config.set(key, value);
    }
    // Validation refuses weaker values; these stay set whatever the configuration says.
    config.set("bootstrap.servers", &kafka.brokers).set("enable.idempotence", "true").set("acks", "all");
    config
}

/// Consumer settings for exactly-once delivery: as [`consumer_config`], but offsets are committed
/// only inside the producer's transactions (no automatic commits), and records of aborted
/// transactions are never read.
pub fn transactional_consumer_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = consumer_config(kafka);
    config.set("enable.auto.commit", "false").set("isolation.level", "read_committed");
    config
}

/// Producer settings for exactly-once delivery: [`producer_config`] with `transactional_id`, the
/// broker's timeout for an open transaction, and records timing out no later than it.
pub fn transactional_producer_config(
    kafka: &KafkaConfig,
    transactional_id: &str,
    timeout_ms: u64,
) -> ClientConfig {
    let mut config = producer_config(kafka);
    // A record must time out before its transaction can (librdkafka refuses otherwise).
    let message_timeout = config
        .get("message.timeout.ms")
        .and_then(|ms| ms.parse::<u64>().ok())
        .map_or(timeout_ms, |ms| ms.min(timeout_ms));
    config
        .set("transactional.id", transactional_id)
        .set("transaction.timeout.ms", timeout_ms.to_string())
        .set("message.timeout.ms", message_timeout.to_string());
    config
}

/// Whether the broker refused a produced record for a reason retrying will not change soon: the
/// record is too large, the client is not authorized, the record or topic is invalid. Anything else
/// (timeouts, unreachable brokers, leader elections, missing replicas) is an outage that passes.
pub fn refused_for_good(error: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(
            Code::MessageSizeTooLarge
                | Code::InvalidMessageSize
                | Code::MessageBatchTooLarge
                | Code::TopicAuthorizationFailed
                | Code::ClusterAuthorizationFailed
                | Code::TransactionalIdAuthorizationFailed
                | Code::InvalidRecord
                | Code::InvalidMessage
                | Code::InvalidTopic
                | Code::InvalidRequiredAcks
                | Code::PolicyViolation
                | Code::UnsupportedVersion
                | Code::UnsupportedForMessageFormat
                | Code::InvalidArgument
        )
    )
}

/// Admin client settings: the connection properties only.
pub fn admin_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in &kafka.properties {
        config.set(key, value);
    }
    config.set("bootstrap.servers", &kafka.brokers);
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn passthrough_applies_but_guarantees_win() {
        let mut config = Config::with_brokers("b:9092");
        config.kafka.properties.insert("security.protocol".into(), "SASL_SSL".into());
        config.kafka.consumer.insert("fetch.wait.max.ms".into(), "10".into());
        config.kafka.producer.insert("linger.ms".into(), "20".into());
        let consumer = consumer_config(&config.kafka);
        assert_eq!(consumer.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(consumer.get("fetch.wait.max.ms"), Some("10"));
        assert_eq!(consumer.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(consumer.get("group.id"), Some("weft"));
        let producer = producer_config(&config.kafka);
        assert_eq!(producer.get("linger.ms"), Some("20"));
        assert_eq!(producer.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(producer.get("fetch.wait.max.ms"), None);
    }
}
