//! sea-orm entity for the `labellings` table (the `jobs` row lives with the queue, in `queue/job.rs`).

pub mod labelling {
    use sea_orm::entity::prelude::*;
    use serde::{Deserialize, Serialize};

    /// Which list of the labelling workspace a spectrum belongs to, in display order.
    #[derive(
        Debug,
        Clone,
        Copy,
        PartialEq,
        Eq,
        Hash,
        EnumIter,
        DeriveActiveEnum,
        Serialize,
        Deserialize,
        utoipa::ToSchema,
    )]
    #[sea_orm(rs_type = "String", db_type = "String(StringLen::N(32))")]
    #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
    pub enum SpectrumSet {
        #[sea_orm(string_value = "ORACLE")]
        Oracle,
        #[sea_orm(string_value = "PERFORMANCE_ESTIMATION")]
        PerformanceEstimation,
        #[sea_orm(string_value = "CANDIDATE")]
        Candidate,
    }

    impl SpectrumSet {
        /// In the workspace's order.
        pub const ALL: [SpectrumSet; 3] = [
            SpectrumSet::Oracle,
            SpectrumSet::PerformanceEstimation,
            SpectrumSet::Candidate,
        ];

        /// The name in the API, the table and the job files.
        pub fn as_str(self) -> &'static str {
            match self {
                SpectrumSet::Oracle => "ORACLE",
                SpectrumSet::PerformanceEstimation => "PERFORMANCE_ESTIMATION",
                SpectrumSet::Candidate => "CANDIDATE",
            }
        }

        pub fn from_name(name: &str) -> Option<SpectrumSet> {
            Self::ALL.into_iter().find(|v| v.as_str() == name)
        }

        /// Position in [`SpectrumSet::ALL`].
        pub fn rank(self) -> usize {
            Self::ALL.iter().position(|v| *v == self).unwrap_or(0)
        }
    }

    /// Also the API's view of a labelling (SPEC §5 field names).
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, serde::Serialize, utoipa::ToSchema)]
    #[schema(as = Labelling)]
    #[sea_orm(table_name = "labellings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub labelling_id: Uuid,
        pub job_id: Uuid,
        pub spectrum_filename: String,
        pub spectrum_set: SpectrumSet,
        pub sequence_iteration: i32,
        pub model_prediction: Option<String>,
        pub user_label: Option<String>,
        pub user_comment: Option<String>,
        /// Order within the job's list (the job's own order, e.g. most uncertain first).
        #[serde(skip)]
        pub position: i32,
        /// The entropy of the model's prediction (null where the job gave none).
        pub entropy: Option<f64>,
        /// The spectrum's row in its iteration's `result.h5` (for its preprocessed flux).
        #[serde(skip)]
        pub result_row: Option<i64>,
        /// Who gave the label (with accounts on).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub labelled_by: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
