//! Every answer a store gives over the calls of [`super::calls`], gathered into one value, so
//! that two stores (one loaded from a snapshot, one replayed in full) are compared whole.

use chrono::{DateTime, Utc};
use commlog::{
    Channel, ChannelReport, CommunicationStats, CostFilter, CostReport, EffectivenessFilter,
    EngagementFilter, ImpactFilter, ImpactReport, Message, Month, Period, StatsFilter, Store,
    UserEngagement, UserId,
};

use super::calls::{MESSAGE_TYPES, MONTHS, USER_COUNT};

/// Everything [`answers`] asks, in a fixed order.
#[derive(Debug, PartialEq)]
pub struct Answers {
    pub stats: Vec<CommunicationStats>,
    pub histories: Vec<Vec<Message>>,
    /// Every message by id, from 0 to one past the last (errors as their messages).
    pub messages: Vec<Result<Message, String>>,
    pub external_ids: Vec<Option<String>>,
    pub by_external_id: Vec<Option<Message>>,
    pub engagement: Vec<UserEngagement>,
    pub channels: Vec<ChannelReport>,
    pub costs: Vec<CostReport>,
    pub impact: Vec<ImpactReport>,
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}

/// Asks `store` every query: the stats over all, per user, per type, per channel and per
/// window of `windows_ms`; every history; every message and its external id; each of
/// `external_ids`; the engagement of every user; channel effectiveness, costs and budgets, and
/// financial impact, unfiltered and per user, type, channel, period, month and window.
pub fn answers(store: &Store, external_ids: &[&str], windows_ms: &[(i64, i64)]) -> Answers {
    let users = 1..=USER_COUNT + 1;
    let windows: Vec<(DateTime<Utc>, DateTime<Utc>)> = windows_ms
        .iter()
        .map(|(start_ms, end_ms)| (time(*start_ms), time(*end_ms)))
        .collect();

    let mut stats_filters = vec![StatsFilter::new()];
    stats_filters.extend(users.clone().map(|user| StatsFilter::new().user(user)));
    stats_filters.extend(MESSAGE_TYPES.map(|name| StatsFilter::new().message_type(name)));
    stats_filters.extend(Channel::ALL.map(|channel| StatsFilter::new().channel(channel)));
    stats_filters.extend(
        windows
            .iter()
            .map(|(start, end)| StatsFilter::new().start(*start).end(*end)),
    );
    let stats = stats_filters
        .iter()
        .map(|filter| store.get_communication_stats(filter).unwrap())
        .collect();

    let histories = users
        .clone()
        .map(|user| {
            store
                .get_user_communication_history(user, usize::MAX)
                .unwrap()
        })
        .collect();

    let message_count = store
        .get_communication_stats(&StatsFilter::new())
        .unwrap()
        .total_messages;
    let messages = (0..=message_count + 1)
        .map(|id| store.get_message(id).map_err(|error| error.to_string()))
        .collect();
    let external_ids_of = (1..=message_count)
        .map(|id| store.get_external_id(id).unwrap())
        .collect();
    let by_external_id = external_ids
        .iter()
        .map(|external_id| store.message_by_external_id(external_id).unwrap())
        .collect();

    let mut engagement_filters = vec![EngagementFilter::new()];
    engagement_filters.extend(MESSAGE_TYPES.map(|name| EngagementFilter {
        message_type: Some(name.to_string()),
        ..EngagementFilter::new()
    }));
    engagement_filters.extend(Channel::ALL.map(|channel| EngagementFilter {
        channel: Some(channel),
        ..EngagementFilter::new()
    }));
    engagement_filters.extend(windows.iter().map(|(start, end)| EngagementFilter {
        start: Some(*start),
        end: Some(*end),
        ..EngagementFilter::new()
    }));
    let engagement = users
        .clone()
        .flat_map(|user| {
            engagement_filters
                .iter()
                .map(move |filter| store.get_user_engagement(user, filter).unwrap())
        })
        .collect();

    let mut channel_filters = vec![EffectivenessFilter::new()];
    channel_filters.extend([Period::Day, Period::Week, Period::Month].map(|period| {
        EffectivenessFilter {
            period: Some(period),
            ..EffectivenessFilter::new()
        }
    }));
    channel_filters.extend(users.clone().map(|user| EffectivenessFilter {
        user: Some(UserId(user)),
        ..EffectivenessFilter::new()
    }));
    channel_filters.extend(MESSAGE_TYPES.map(|name| EffectivenessFilter {
        message_type: Some(name.to_string()),
        ..EffectivenessFilter::new()
    }));
    channel_filters.extend(windows.iter().map(|(start, end)| EffectivenessFilter {
        start: Some(*start),
        end: Some(*end),
        period: Some(Period::Day),
        ..EffectivenessFilter::new()
    }));
    let channels = channel_filters
        .iter()
        .map(|filter| store.get_channel_effectiveness(filter).unwrap())
        .collect();

    let mut cost_filters = vec![CostFilter::new()];
    cost_filters.extend(MONTHS.map(|month| CostFilter {
        month: Some(month.parse::<Month>().unwrap()),
        ..CostFilter::new()
    }));
    cost_filters.extend(Channel::ALL.map(|channel| CostFilter {
        channel: Some(channel),
        ..CostFilter::new()
    }));
    cost_filters.extend(users.clone().map(|user| CostFilter {
        user: Some(UserId(user)),
        ..CostFilter::new()
    }));
    cost_filters.extend(MESSAGE_TYPES.map(|name| CostFilter {
        message_type: Some(name.to_string()),
        ..CostFilter::new()
    }));
    cost_filters.extend(windows.iter().map(|(start, end)| CostFilter {
        start: Some(*start),
        end: Some(*end),
        ..CostFilter::new()
    }));
    let costs = cost_filters
        .iter()
        .map(|filter| store.get_cost_report(filter).unwrap())
        .collect();

    let mut impact_filters = vec![ImpactFilter::new()];
    impact_filters.extend(users.map(|user| ImpactFilter {
        user: Some(UserId(user)),
        ..ImpactFilter::new()
    }));
    impact_filters.extend(MESSAGE_TYPES.map(|name| ImpactFilter {
        message_type: Some(name.to_string()),
        ..ImpactFilter::new()
    }));
    impact_filters.extend(Channel::ALL.map(|channel| ImpactFilter {
        channel: Some(channel),
        ..ImpactFilter::new()
    }));
    impact_filters.extend(windows.iter().map(|(start, end)| ImpactFilter {
        start: Some(*start),
        end: Some(*end),
        ..ImpactFilter::new()
    }));
    let impact = impact_filters
        .iter()
        .map(|filter| store.get_financial_impact(filter).unwrap())
        .collect();

    Answers {
        stats,
        histories,
        messages,
        external_ids: external_ids_of,
        by_external_id,
        engagement,
        channels,
        costs,
        impact,
    }
}
