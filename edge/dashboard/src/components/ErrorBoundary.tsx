import { Component, type ErrorInfo, type ReactNode } from "react";

/** The last line of defence: a render error shows a message and a reload button. */
export class ErrorBoundary extends Component<{ children: ReactNode; label?: string }, { error: Error | null }> {
  state = { error: null as Error | null };
  static getDerivedStateFromError(error: Error) {
    return { error };
  }
  componentDidCatch(error: Error, info: ErrorInfo) {
    console.error("AIFX dashboard error", error, info.componentStack);
  }
  render() {
    if (this.state.error) {
      return (
        <div className="panel error-panel" role="alert" data-testid="error-boundary">
          <h2>Something went wrong{this.props.label ? ` in ${this.props.label}` : ""}</h2>
          <p className="muted">{this.state.error.message}</p>
          <div className="row">
            <button onClick={() => this.setState({ error: null })}>Try again</button>
            <button className="ghost" onClick={() => location.reload()}>
              Reload the page
            </button>
          </div>
        </div>
      );
    }
    return this.props.children;
  }
}

