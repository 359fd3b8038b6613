//! `consumer regions`: loads the country → region reference table into the lake, and gives a
//! lake without one the table the repository ships.

use crate::core::layout::regions_file;
use crate::core::regions::Regions;
use crate::lake::{Lake, LakeError, Precondition};

/// Writes `regions` as the lake's `regions` table, replacing the one there.
pub async fn load_regions(lake: &impl Lake, regions: &Regions) -> Result<(), LakeError> {
    lake.put(&regions_file(), regions.to_csv()).await
}

/// Writes the shipped table into a lake that has none, leaving a user's own alone; `true` if it
/// wrote it.
pub async fn ensure_regions(lake: &impl Lake) -> Result<bool, LakeError> {
    let shipped = Regions::default_table().to_csv();
    match lake
        .put_if(&regions_file(), shipped, Precondition::Absent)
        .await
    {
        Ok(_) => Ok(true),
        // There already (or written by a racing poller): either way the lake has its table.
        Err(e) if e.is_conflict() => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::LocalLake;

    #[tokio::test]
    async fn the_shipped_table_never_replaces_a_users_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = LocalLake::new(dir.path());
        assert!(ensure_regions(&lake).await.expect("written"));
        assert!(!ensure_regions(&lake).await.expect("left"));
        let mine = Regions::parse("country,region,sub_region\nAtlantis,Ocean,Deep\n").expect("ok");
        load_regions(&lake, &mine).await.expect("loaded");
        assert!(!ensure_regions(&lake).await.expect("left"));
        let stored = lake
            .get(&regions_file())
            .await
            .expect("get")
            .expect("there");
        let stored = Regions::parse(std::str::from_utf8(&stored.bytes).expect("utf-8"));
        assert_eq!(stored.expect("valid"), mine);
    }
}
