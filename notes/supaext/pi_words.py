"""The hex digits of pi, computed with Machin's formula: Blowfish's initial state for bcrypt."""


def arctan_inv(x, one):
    total = term = one // x
    x2 = x * x
    n = 1
    sign = -1
    while term:
        term //= x2
        n += 2
        total += sign * (term // n)
        sign = -sign
    return total


nwords = 18 + 1024
bits = nwords * 32 + 64
one = 1 << bits
pi = 16 * arctan_inv(5, one) - 4 * arctan_inv(239, one)
frac = pi - 3 * one
words = []
for _ in range(nwords):
    frac <<= 32
    w = frac >> bits
    frac -= w << bits
    words.append(w)


def blowfish_init() -> list[int]:
    """Blowfish's initial P-array (18 words) and S-boxes (4 x 256): the hex digits of pi's fraction."""
    return words


assert words[0] == 0x243F6A88 and words[18] == 0xD1310BA6 and words[-1] == 0x3AC372E6
