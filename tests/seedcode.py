"""Seed code kept verbatim (but for line breaks) as the reference the tests and benchmarks compare with."""

from __future__ import annotations


def check_anomaly(df_by_metric, metric, a=4, n=5):
    """Seed 002's anomaly check (its alert DAG)."""
    df_by_metric['q25'] = df_by_metric[metric].shift(1).rolling(n).quantile(0.25)
    df_by_metric['q75'] = df_by_metric[metric].shift(1).rolling(n).quantile(0.75)
    df_by_metric['iqr'] = df_by_metric['q75'] - df_by_metric['q25']
    df_by_metric['up'] = df_by_metric['q75'] + a * df_by_metric['iqr']
    df_by_metric['low'] = df_by_metric['q25'] - a * df_by_metric['iqr']
    df_by_metric['up'] = df_by_metric['up'].rolling(n, center=True, min_periods=1).mean()
    df_by_metric['low'] = df_by_metric['low'].rolling(n, center=True, min_periods=1).mean()
    if (df_by_metric[metric].iloc[-1] < df_by_metric['low'].iloc[-1]
            or df_by_metric[metric].iloc[-1] > df_by_metric['up'].iloc[-1]) and (df_by_metric['iqr'].iloc[-1] != 0):
        is_alert = 1
    else:
        is_alert = 0
    return is_alert, df_by_metric
