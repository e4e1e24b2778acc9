// Placeholder until the kernel test set-up lands (probe build, test image).
export default function setup(): void {}
