"""The reference coursework's statements, numbered R2.1 to R6.5, that the built-in studies test.

A close English rendering of the coursework report (written in Persian; exercises E2 to E6).
A claim cites one by number (`source = "R4.2"`) and the report quotes it; a claim that is
nnstudy's own addition says `source = "nnstudy"` and is never credited to the coursework.
Several of these statements may be false: a study that finds so is working.
"""

OWN = "nnstudy"  # the source of a claim nnstudy adds on its own account

# Exercises: E2 initialisation, E3 pooling, E4 losses, E5 ReLU vs Leaky ReLU on MNIST, E6 three CNNs on CIFAR-10.
STATEMENTS = {
    "R2.1": 'Symmetry breaking is a basic need of models such as neural networks: when all weights are initialised to the same value, it may be hard or impossible for them to become different during training.',
    "R2.2": 'Do not initialise the weights to zero: in some cases the network may not learn at all.',
    "R2.3": 'Do not initialise the weights to a constant: you end up with a symmetric network.',
    "R2.4": 'Initialising the weights randomly, with the biases held constant, breaks the symmetry.',
    "R2.5": 'That is not enough: weights that are too small lead to vanishing gradients, weights that are too large lead to exploding gradients. (The sentence is garbled in the original; this is its evident meaning.)',
    "R2.6": 'So the weights should be drawn from a specific range; a better technique is Xavier initialisation, so that the variance is the same in every layer.',
    "R3.1": 'A pooling layer usually follows a convolution and reduces the spatial size of its input; it acts on each depth slice independently, and the depth is always preserved.',
    "R3.2": 'Pooling reduces the number of trainable parameters and the computational cost, and so controls overfitting.',
    "R3.3": 'Pooling makes the model invariant to certain distortions.',
    "R3.4": 'A pooling layer is not trained by the gradients in backpropagation.',
    "R3.5": "In most cases, especially in computer vision, pooling increases the model's accuracy.",
    "R3.6": 'When the model must be very sensitive to small changes, pooling should be avoided.',
    "R4.1": 'Cross-entropy is a better criterion than MSE for classification, because the decision boundary in a classification task is large.',
    "R4.2": 'MSE does not punish misclassifications enough; it suits regression, where the distance between two predictable values is small. (The original says "misclassifications", not "confident mistakes".)',
    "R4.3": 'Cross-entropy is the natural cost with a softmax or sigmoid output when maximising the likelihood of the correct class; assuming a continuous, normally distributed target instead gives MSE with a linear output layer.',
    "R4.4": 'A classifier can be trained with MSE and will probably work well, though not very well with sigmoid/softmax outputs: a linear output layer is the better choice there.',
    "R4.5": 'Another option for classification is a margin loss, which amounts to a (linear) SVM on top of the network. (No claim about its accuracy is made.)',
    "R5.1": 'ReLU reduced the saturation problem of sigmoid in two ways: it is not bounded to [0, 1] like sigmoid, and every negative value goes to zero.',
    "R5.2": 'ReLU converges faster, because its computation has no division or exponential.',
    "R5.3": "Leaky ReLU's non-zero slope helps the model train faster: Leaky ReLU is faster than ReLU.",
    "R5.4": 'After 1 epoch, on the training set ReLU had 0.2789% higher accuracy and 0.9952% lower loss than Leaky ReLU (ReLU better); on the test set ReLU had 0.5230% lower accuracy and 0.5030% higher loss (Leaky ReLU better). These are relative differences from one run each. The concluding sentence for the test set is garbled in the original.',
    "R5.5": 'After 1000 epochs Leaky ReLU did better in every category: ReLU had 0.0888% lower training accuracy and 0.3474% higher training loss, 0.0900% lower test accuracy and 2.1124% higher test loss (relative, one run each).',
    "R5.6": 'Conclusion: the Leaky ReLU model performs better than the ReLU model.',
    "R6.1": 'Test accuracy after 5 epochs: A 0.62, B 0.65, C 0.70 (one run each). A figure labelled "loss" is also printed (A 0.492, B 0.497, C 0.334), in sentences too garbled to say what it measures.',
    "R6.2": 'Model A confuses cat and dog the most; it also does poorly on deer and bird, and among objects it also has trouble recognising truck and car.',
    "R6.3": "Model B keeps A's confusions and also confuses horse and deer.",
    "R6.4": 'Model C keeps the same confusions, but fewer of them.',
    "R6.5": 'Per-class precision/recall/F1 tables are given for A, B and C (e.g. A: cat recall 0.47, dog recall 0.34; B: cat 0.41, dog 0.54; C: cat 0.58, dog 0.66), and the confusion matrices of B and C as numbers (A\'s only as an image).',
}


def is_reference(source: str) -> bool:
    """Whether a claim's source names a coursework statement ("R" then exercise.number)."""
    return bool(source) and source[0] == "R" and source[1:2].isdigit()


# Statements, or parts of them, that no study can test, and why (the README lists them).
NOT_TESTED = {
    "R4.3": "a derivation (cross-entropy from the likelihood of the correct class, MSE from a normal target), "
            "true by the mathematics, not by a measurement",
    "R4.5": "a definition (a margin loss is an SVM on the network's features); it makes no claim about accuracy or "
            "anything else the data could decide, so mnist-loss trains the margin variant and compares it in its "
            "report, but no claim tests it (one would put words in the coursework's mouth)",
}
# Statements whose words quantify over their claims' cases: the replication report reads the claims' verdicts
# by this rule instead of "every claim". Set 2026-12-06, after the full-data results were seen (3 of R3.5's 4
# claims supported); the rule is the statement's own word ("in most cases") and the reading its claims declared
# before those results ("each pooling is tested against none; most of the four should hold").
MOST = {
    "R3.5": "'in most cases': each pooling against none is a case; reproduced when more than half of the cases are "
            "supported, contradicted when at least half are contradicted, else not shown",
}
PARTS_NOT_TESTED = {
    "R3.1": "'acts on each depth slice independently' holds by the pooling layers' construction",
    "R3.6": "the advice is for a task that must be very sensitive to small changes, which no study here has; its "
            "claim is the same test as R3.3's (the same runs and measure, predictions under shifts, at 1 pixel), "
            "mirrored, so it is no evidence apart from R3.3's",
    "R5.2": "the reason given (no division or exponential) is a per-step cost, and a stack's runs share each step, "
            "so their step times cannot be told apart",
    "R5.4": "the sizes (0.2789% and so on) are one run each; the claims test the directions",
    "R5.5": "the sizes are one run each; the claims test the directions",
    "R6.1": "the 'loss' figures are too garbled to say what they measure; the claims test the order A < B < C",
    "R6.5": "the tables' other numbers; the claims test the cat and dog recalls the text names",
}
