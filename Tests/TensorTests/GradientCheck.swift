import Tensor
import XCTest

/// Checks an op's VJP against central finite differences of L = Σ f(x)·R for a random R.
/// Differences are taken in float32 on sampled coordinates, so tolerances are loose but
/// still catch any wrong term (a missing factor or transposition is off by far more).
func checkGradients(
    _ inputs: [Tensor], epsilon: Float = 1e-2, tolerance: Float = 2e-2,
    samples: Int = 24, file: StaticString = #filePath, line: UInt = #line,
    _ f: ([Tensor]) -> Tensor
) {
    let variables = inputs.map { $0.asVariable() }
    let output = f(variables)
    XCTAssertTrue(output.requiresGrad, "op output did not record a gradient node", file: file, line: line)
    let weights = Tensor.randomNormal(output.shape, seed: 99)
    let loss = (output * weights).sum()
    let analytic = Autograd.gradients(of: loss, withRespectTo: variables)

    func lossValue(_ values: [Tensor]) -> Double {
        let out = f(values)
        return zip(out.data, weights.data).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
    }
    var generator = SplitMix64(seed: 7)
    for (index, input) in inputs.enumerated() {
        XCTAssertEqual(analytic[index].shape, input.shape, file: file, line: line)
        let coordinates =
            input.count <= samples
            ? Array(0..<input.count)
            : (0..<samples).map { _ in Int(generator.next() % UInt64(input.count)) }
        for c in coordinates {
            var plus = input.data
            var minus = input.data
            plus[c] += epsilon
            minus[c] -= epsilon
            var upper = inputs
            var lower = inputs
            upper[index] = Tensor(shape: input.shape, data: plus)
            lower[index] = Tensor(shape: input.shape, data: minus)
            let numeric = Float((lossValue(upper) - lossValue(lower)) / Double(2 * epsilon))
            let got = analytic[index].data[c]
            let scale = max(1, abs(numeric), abs(got))
            XCTAssertLessThan(
                abs(numeric - got) / scale, tolerance,
                "input \(index) coordinate \(c): analytic \(got) vs numeric \(numeric)",
                file: file, line: line)
        }
    }
}

func random(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
    Tensor.randomNormal(shape, seed: seed) * scale
}
