"""Classification metrics for emotion recognition: UAR, WAR, macro P/R/F1, per class, confusion."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support


def classification_metrics(y_true, y_pred, labels: list[str]) -> dict:
    """Every figure as a fraction in 0..1; classes absent from y_true do not count towards UAR."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    indices = list(range(len(labels)))
    present = sorted(set(y_true.tolist()))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=indices, zero_division=0)
    return {
        'n': int(len(y_true)),
        'war': float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        'accuracy': float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        'uar': float(np.mean(recall[present])) if present else 0.0,
        'precision_macro': float(np.mean(precision[present])) if present else 0.0,
        'recall_macro': float(np.mean(recall[present])) if present else 0.0,
        'f1_macro': float(np.mean(f1[present])) if present else 0.0,
        'per_class': {labels[i]: {'precision': float(precision[i]), 'recall': float(recall[i]),
                                  'f1': float(f1[i]), 'support': int(support[i])} for i in indices},
        'labels': list(labels),
        'confusion': confusion_matrix(y_true, y_pred, labels=indices).tolist(),
    }
