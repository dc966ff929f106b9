"""The matrix view: a convolution is a matrix A, its transposed convolution is A^T (not A^-1)."""

import torch
from torch import nn

from deconvnet.engine.steps import TransposedConv2d

KERNEL = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])


def conv_3x3():
    conv = nn.Conv2d(1, 1, 3, bias=False)
    conv.weight.data.copy_(KERNEL.view(1, 1, 3, 3))
    return conv


def matrix_of(linear_map, in_shape):
    """Columns are the images of the basis vectors: the matrix of a linear map."""
    columns = []
    for i in range(int(torch.tensor(in_shape).prod())):
        basis = torch.zeros(in_shape).view(-1)
        basis[i] = 1.0
        columns.append(linear_map(basis.view(1, 1, *in_shape)).reshape(-1))
    return torch.stack(columns, dim=1)


def test_convolution_matrix_and_its_transpose_match_the_worked_example():
    conv = conv_3x3()
    deconv = TransposedConv2d(conv)
    A = matrix_of(lambda x: conv(x).detach(), (4, 4))  # (4, 16)
    B = matrix_of(lambda y: deconv(y, torch.Size([1, 1, 4, 4]), "deconvnet")[0].detach(), (2, 2))  # (16, 4)
    # The first row of A is the kernel laid over a 4-wide row-major image.
    assert A[0].tolist() == [1, 2, 3, 0, 4, 5, 6, 0, 7, 8, 9, 0, 0, 0, 0, 0]
    assert A.shape == (4, 16) and B.shape == (16, 4)
    torch.testing.assert_close(B, A.T)
    assert (A @ B).tolist() == [[285, 186, 154, 94], [186, 285, 106, 154], [154, 106, 285, 186], [94, 154, 186, 285]]
    assert not torch.allclose(B @ A, torch.eye(16))  # the adjoint, not the inverse


def test_transposed_convolution_of_ones_is_the_gradient_of_the_summed_convolution():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1, bias=True)
    x = torch.randn(1, 3, 9, 8, requires_grad=True)
    conv(x).sum().backward()
    output = conv(x.detach())
    back = TransposedConv2d(conv)(torch.ones_like(output), x.shape, "deconvnet")[0]
    torch.testing.assert_close(back, x.grad)
