export { type Clock, FakeClock, systemClock } from './clock.js';
export { TimerScope } from './scope.js';
export { isShared, wheelFor } from './shared.js';
export { TimingWheel, type WheelOptions, type WheelTimer } from './wheel.js';
