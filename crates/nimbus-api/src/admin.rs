//! Operator actions on the control store, run by `nimbus admin` against a data
//! directory: accounts, their limits and their API keys.

use nimbus_model::validate_function_name;
use nimbus_store::{Account, ControlStore, SqliteStore, StoreError};

use crate::auth::{generate_key, hash_key, key_prefix};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("account '{0}' was not found; list accounts with `nimbus admin account list`")]
    AccountNotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn check_account_name(name: &str) -> Result<(), AdminError> {
    validate_function_name(name).map_err(|_| {
        AdminError::Invalid(format!(
            "account name '{name}' is invalid; use 1 to 64 letters, digits, hyphens and underscores"
        ))
    })
}

fn check_limit(limit: u32) -> Result<(), AdminError> {
    if limit < nimbus_store::MIN_ACCOUNT_CONCURRENCY {
        return Err(AdminError::Invalid(format!(
            "concurrency limit {limit} is too small; use at least {}",
            nimbus_store::MIN_ACCOUNT_CONCURRENCY
        )));
    }
    Ok(())
}

/// Creates an account and its first API key; the key is returned once and stored
/// only as a hash.
pub async fn create_account(
    store: &SqliteStore,
    name: &str,
    concurrency_limit: u32,
) -> Result<(Account, String), AdminError> {
    check_account_name(name)?;
    check_limit(concurrency_limit)?;
    let account = store.create_account(name, concurrency_limit).await?;
    let key = generate_key();
    store
        .add_api_key(account.account_id, &hash_key(&key), &key_prefix(&key))
        .await?;
    Ok((account, key))
}

pub async fn create_key(store: &SqliteStore, account_name: &str) -> Result<String, AdminError> {
    let account = store
        .get_account_by_name(account_name)
        .await?
        .ok_or_else(|| AdminError::AccountNotFound(account_name.to_string()))?;
    let key = generate_key();
    store
        .add_api_key(account.account_id, &hash_key(&key), &key_prefix(&key))
        .await?;
    Ok(key)
}

pub async fn set_concurrency_limit(store: &SqliteStore, account_name: &str, limit: u32) -> Result<(), AdminError> {
    check_limit(limit)?;
    let account = store
        .get_account_by_name(account_name)
        .await?
        .ok_or_else(|| AdminError::AccountNotFound(account_name.to_string()))?;
    let reserved = store.account_usage(account.account_id).await?.reserved_concurrency;
    // An account under 100 keeps its whole limit unreserved, so it needs every
    // reservation removed.
    let unreserved_minimum = nimbus_store::min_unreserved_concurrency(limit);
    if (limit as u64) < reserved + unreserved_minimum as u64 {
        return Err(AdminError::Invalid(format!(
            "concurrency limit {limit} is below the {reserved} reserved by functions plus the {unreserved_minimum} that stays unreserved; lower reservations first"
        )));
    }
    store.set_account_concurrency_limit(account.account_id, limit).await?;
    Ok(())
}

pub async fn list_accounts(store: &SqliteStore) -> Result<Vec<Account>, AdminError> {
    Ok(store.list_accounts().await?)
}
