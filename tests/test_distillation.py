import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.finetune import distillation_loss  # noqa: E402


def log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize(
    ("temperature", "alpha"), [(1.0, 1.0), (2.0, 0.5), (7.0, 0.12), (4.0, 0.0)]
)
def test_distillation_loss_matches_its_formula(temperature, alpha):
    student = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    teacher = np.array([[3.0, 1.0, -2.0], [-1.0, 0.0, 2.5]])
    labels = np.array([0, 2])
    cross_entropy = -log_softmax(student)[np.arange(2), labels].mean()
    p_teacher = np.exp(log_softmax(teacher / temperature))
    kl = (p_teacher * (np.log(p_teacher) - log_softmax(student / temperature))).sum(-1).mean()
    expected = alpha * cross_entropy + (1 - alpha) * temperature**2 * kl
    actual = distillation_loss(
        torch.tensor(student), torch.tensor(teacher), torch.tensor(labels), temperature, alpha
    )
    assert actual.item() == pytest.approx(expected, rel=1e-6)


def test_student_equal_to_teacher_has_only_the_hard_loss():
    logits = torch.tensor([[1.0, 2.0, 0.5]])
    labels = torch.tensor([1])
    loss = distillation_loss(logits, logits, labels, 3.0, 0.25)
    hard = torch.nn.functional.cross_entropy(logits, labels)
    assert loss.item() == pytest.approx(0.25 * hard.item(), rel=1e-6)


def test_rows_without_a_label_add_only_the_soft_part():
    from models.finetune import IGNORE

    student = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    teacher = torch.tensor([[3.0, 1.0, -2.0], [-1.0, 0.0, 2.5]])
    labels = torch.tensor([0, IGNORE])
    loss = distillation_loss(student, teacher, labels, 2.0, 0.5)
    hard = torch.nn.functional.cross_entropy(student[:1], labels[:1])
    soft = distillation_loss(student, teacher, torch.tensor([IGNORE, IGNORE]), 2.0, 0.5)
    assert loss.item() == pytest.approx(0.5 * hard.item() + soft.item(), rel=1e-6)
    # With no label at all, the loss is the soft part alone (the hard part is 0, not NaN).
    only_soft = distillation_loss(student, teacher, labels, 2.0, 0.0)
    assert soft.item() == pytest.approx(0.5 * only_soft.item(), rel=1e-6)


def test_mse_soft_loss_is_the_squared_distance_between_logits():
    student = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    teacher = np.array([[3.0, 1.0, -2.0], [-1.0, 0.0, 2.5]])
    labels = np.array([0, 2])
    cross_entropy = -log_softmax(student)[np.arange(2), labels].mean()
    squared = ((student - teacher) ** 2).sum(-1).mean()
    actual = distillation_loss(
        torch.tensor(student), torch.tensor(teacher), torch.tensor(labels), 9.0, 0.25, "mse"
    )
    assert actual.item() == pytest.approx(0.25 * cross_entropy + 0.75 * squared, rel=1e-6)


def test_logits_in_bfloat16_stay_close_to_float32(tmp_path, clinc):
    from transformers import AutoTokenizer

    from models.finetune import load_for_classification, predict_logits
    from tests.tiny import save_tiny_bert

    base = save_tiny_bert(tmp_path / "bert", clinc.splits["train"].texts[:2000], hidden=64)
    model = load_for_classification(base, clinc.labels)
    tokenizer = AutoTokenizer.from_pretrained(base)
    texts = clinc.splits["validation"].texts[:200]
    exact = predict_logits(model, tokenizer, texts, 32)
    halved = predict_logits(model, tokenizer, texts, 32, bf16=True)
    assert halved.dtype == torch.float32 and halved.shape == exact.shape
    assert not torch.equal(halved, exact)  # the products did run in bfloat16
    spread = float(exact.max() - exact.min())
    assert float((halved - exact).abs().max()) < 0.05 * spread
